"""The options every TensorFlow-trained workload shares: which runtime serves it, and with how many threads.

Standard library and pydantic only (scenario validation reads these). ``runtime: litert`` serves
the same networks through LiteRT (``workloads.nn.litert_serving``) from files that
``python -m bubbleup export`` makes from the same weights (``workloads.nn.litert_files``).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, model_validator

from workloads.nn import litert_files


class RuntimeOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    #: tensorflow: the compiled TF graphs; litert: the LiteRT interpreter (XNNPACK) on exported files.
    runtime: Literal["tensorflow", "litert"] = "tensorflow"
    #: LiteRT only: post-training quantisation of the exported model (its held-out accuracy is recorded).
    quantize: Literal["none", "float16", "int8"] = "none"
    #: LiteRT only: "cache" (exported on first use, rebuilt when stale) or the path of an exported file
    #: (ApproxNet; refused unless made from the weights in use).
    model_file: str = "cache"
    #: The runtime's op threads: TensorFlow's intra-op pool, or the LiteRT interpreter's threads
    #: (``threads`` is another name for it).
    intra_op_threads: int = Field(
        default=2, ge=1, le=1024, validation_alias=AliasChoices("intra_op_threads", "threads")
    )
    #: TensorFlow only: its inter-op pool.
    inter_op_threads: int = Field(default=1, ge=1, le=1024)

    @model_validator(mode="before")
    @classmethod
    def _one_name_for_threads(cls, data: Any) -> Any:
        """Both names given: said as such (pydantic took one and called the other an unknown key)."""
        if isinstance(data, dict) and "threads" in data and "intra_op_threads" in data:
            raise ValueError("threads: it and intra_op_threads are one setting under two names: give one of them")
        return data

    @model_validator(mode="after")
    def _runtime_ok(self) -> Any:
        if self.runtime == "tensorflow" and (self.quantize != "none" or self.model_file != "cache"):
            raise ValueError("quantize and model_file apply to runtime: litert only")
        if self.runtime == "litert" and litert_files.litert_wheel_exists():
            from workloads import importable

            if not importable("ai_edge_litert"):
                raise ValueError("runtime litert needs LiteRT (ai-edge-litert), not installed here: "
                                 "pip install 'bubbleup[litert]'")  # fmt: skip
        return self
