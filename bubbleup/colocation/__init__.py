"""Bubble-Up's steps 2 and 3 and their check: the reporter (:mod:`.reporter`: its scenarios and its stored curve),
the workflow that scores, predicts and co-runs (:mod:`.workflow`, each measurement an ordinary run), and the
commands that call it (:mod:`.cli`). Kept light: ``bubbleup --help`` imports the commands, not the workflow."""
