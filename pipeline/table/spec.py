"""What defines a feature table, besides the recordings: :class:`FeatureTableSpec`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pipeline.exceptions import SpecError, WindowError
from pipeline.features import feature_names
from pipeline.labels import LabelPolicy
from pipeline.preprocessing import validate_steps
from pipeline.spec import TaskSpec
from pipeline.spec.errors import key_error, parse, parse_list
from pipeline.spec.features import FeatureItem
from pipeline.spec.preprocess import SignalSection
from pipeline.windows import WindowPlan

__all__ = ["FeatureTableSpec"]


@dataclass(frozen=True)
class FeatureTableSpec:
    """Everything that defines a feature table, besides the recordings.

    Parameters
    ----------
    window : WindowPlan
        Window length and step.
    features : sequence of dict
        Feature specs for ``pipeline.features.make_block_function``, e.g.
        ``[{"name": "mav"}, {"name": "zc", "threshold": 0.01}]``.
    preprocess : sequence of dict
        Preprocessing steps (:func:`pipeline.preprocessing.validate_steps`), applied after
        the channel selection.
    labels : LabelPolicy
        How windows get their label.
    channels : sequence of str, optional
        Channels to keep, in this order (None: all).
    channel_types : sequence of str, optional
        Channel types to keep (None: all).
    """

    window: WindowPlan
    features: tuple[dict[str, Any], ...]
    preprocess: tuple[dict[str, Any], ...] = ()
    labels: LabelPolicy = field(default_factory=LabelPolicy)
    channels: tuple[str, ...] | None = None
    channel_types: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        source = "FeatureTableSpec"
        if isinstance(self.features, str | bytes) or not self.features:
            raise key_error(source, "features", "a non-empty list of features", self.features)
        items = parse_list(FeatureItem, list(self.features), source, "features")
        features = tuple(f.model_dump(exclude_unset=True) | {"name": f.name} for f in items)
        feature_names(list(features))  # two features writing one column: refused here
        section = parse(
            SignalSection,
            {"channels": self.channels, "channel_types": self.channel_types},
            source,
        )
        object.__setattr__(self, "features", features)
        object.__setattr__(self, "preprocess", tuple(validate_steps(list(self.preprocess))))
        for key in ("channels", "channel_types"):
            value = getattr(section, key)
            object.__setattr__(self, key, tuple(value) if value is not None else None)

    def steps(self) -> list[dict[str, Any]]:
        """Return the preprocessing steps, the channel selection first."""
        select = []
        if self.channels or self.channel_types:
            select = [
                {
                    "op": "select",
                    "channels": list(self.channels or []),
                    "types": list(self.channel_types or []),
                }
            ]
        return select + [dict(s) for s in self.preprocess]

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable dict (inverse of :meth:`from_dict`)."""
        return {
            "window": self.window.to_dict(),
            "features": [dict(f) for f in self.features],
            "preprocess": [dict(s) for s in self.preprocess],
            "labels": self.labels.to_dict(),
            "channels": list(self.channels) if self.channels is not None else None,
            "channel_types": list(self.channel_types) if self.channel_types else None,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FeatureTableSpec:
        """Build a spec from :meth:`to_dict` output."""
        return cls(
            window=WindowPlan.from_dict(data["window"]),
            features=tuple(data["features"]),
            preprocess=tuple(data.get("preprocess") or ()),
            labels=LabelPolicy.from_dict(data.get("labels") or {}),
            channels=data.get("channels"),
            channel_types=data.get("channel_types"),
        )

    @classmethod
    def from_task(cls, task: TaskSpec) -> FeatureTableSpec:
        """Build a spec from a :class:`pipeline.spec.TaskSpec`.

        Raises
        ------
        SpecError
            What the task's schema cannot catch (two features writing one column, say),
            prefixed with the task's file.
        """
        w = task.windows
        try:
            labels = LabelPolicy(
                mode=w.label,
                mixed=w.mixed,
                min_purity=1.0 if w.purity is None else float(w.purity),
                exclude=tuple(w.exclude_labels),
                dropped=w.dropped,
            )
            return cls(
                window=WindowPlan(w.length, w.step, w.unit),
                features=tuple(task.feature_specs()),
                preprocess=tuple(task.preprocess_steps()),
                labels=labels,
                channels=tuple(task.channels) if task.channels else None,
                channel_types=tuple(task.channel_types) if task.channel_types else None,
            )
        except (SpecError, WindowError) as exc:
            raise SpecError(f"{task.source or task.name}: {exc}") from None
