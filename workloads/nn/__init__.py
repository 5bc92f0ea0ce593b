"""The neural-network library ApproxNet and MCDNN share: shapes, data, serving, training.

Modules, by job (only ``serving``, ``trainable`` and ``training``'s functions need TensorFlow;
the rest, and this package, import none, so option validation and ``bubbleup list`` stay light):

* ``netspec``: ``NetSpec``, the shape of a residual network with one or more outports.
* ``data``: offline, deterministic synthetic video clips, the only data either workload uses.
* ``weights``: which weights file an option names (and how to make a missing one), file hashes.
* ``tfstart``: TensorFlow start-up: thread pools, GPU memory growth, recorded versions.
* ``serving``: inference-only TF graphs (``ServingNet``), the ``.npz`` weights format, input
  preprocessing and giving freed heap back to the OS.
* ``trainable``: the Keras training twin of a ``NetSpec`` network and its export to folded weights.
* ``training``: the deterministic training loop, its ``Schedule`` and progress output.
"""
