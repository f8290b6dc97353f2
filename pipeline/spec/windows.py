"""Window plans and window-labelling policies as pydantic models.

:class:`pipeline.windows.WindowPlan` and :class:`pipeline.labels.LabelPolicy` are the value
objects the code passes around; these models are what validates them (and the ``windows``
section of a task spec, :class:`pipeline.spec.task.WindowSpec`).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, StrictStr, model_validator
from pydantic_core import PydanticCustomError

from pipeline.spec.errors import Strict
from pipeline.spec.types import Number

__all__ = ["LABEL_SOURCES", "LabelSpec", "WindowPlanSpec"]

LABEL_SOURCES = ("auto", "samples", "recording", "events", "none")


def _names(value: Any) -> Any:
    if isinstance(value, str):
        raise PydanticCustomError("names", "Input should be a list of label names")
    return value


class WindowPlanSpec(Strict):
    """Window length and step, in samples or seconds (window k: ``[k*step, k*step+length)``)."""

    length: Annotated[Number, Field(gt=0, description="window length")]
    step: Annotated[Number, Field(gt=0, description="distance between window starts")]
    unit: Literal["samples", "seconds"] = "samples"

    @model_validator(mode="after")
    def _whole_samples(self) -> WindowPlanSpec:
        if self.unit == "samples":
            for key in ("length", "step"):
                value = getattr(self, key)
                if not float(value).is_integer():
                    msg = (
                        f"an integer number of samples for {key!r}, found {value!r}; give it "
                        f"in seconds with unit='seconds' instead"
                    )
                    raise ValueError(msg)
        return self


class LabelSpec(Strict):
    """How windows get their label (see :class:`pipeline.labels.LabelPolicy`)."""

    source: Literal[LABEL_SOURCES] = "auto"  # type: ignore[valid-type]
    mode: Literal["majority", "centre"] = "majority"
    mixed: Literal["keep", "drop"] = "keep"
    min_purity: Annotated[Number, Field(gt=0, le=1)] = 1.0
    min_overlap: Annotated[Number, Field(ge=0, le=1)] = 0.5
    event_description: StrictStr | None = None
    event_labels: tuple[StrictStr, StrictStr] = ("event", "background")
    exclude: Annotated[tuple[StrictStr, ...], BeforeValidator(_names)] = ()
    dropped: Literal["remove", "unlabel"] = "remove"
