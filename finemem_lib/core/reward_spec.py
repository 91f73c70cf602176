"""The reward settings as one object, and the one table of reward variants.

A :class:`RewardSpec` (variant, beta, w1, w2, group_mode) is built once from a profile's ``rewards:``
section (:meth:`RewardSpec.from_config`) and travels whole to the kernels
(:func:`finemem_lib.core.rewards.step_rewards`, :func:`finemem_lib.core.rewards.group_advantages`).
Its field defaults are the only place the defaults of beta, w1 and w2 are declared.

:data:`VARIANT_TABLE` is the table of the paper's reward variants: name, label, colour and the reward
terms the step reward r_t sums. The kernels, the trainer, the credit measure, the figures and the
episode viewer all read it. :data:`SCHEME_TABLE` holds other systems' credit schemes as rows of the
same shape, each naming the kernel of :mod:`finemem_lib.core.credit_schemes` that forms its A_t. The
trainer and the study plans accept every name of :data:`TRAINABLE` (the variants, then the schemes).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

GROUP_MODES = ("step", "episode")
# Term names of r_t, in the order they are summed (a fixed order keeps sums bit-identical across variants).
TERM_ORDER = ("global", "eara", "fmt", "comp", "chunk")
# Terms only the credit schemes read (``hindsight``: each query's score routed whole to its evidence's writers).
SCHEME_TERMS = ("hindsight",)
# How a row forms A_t: ``grpo`` sums its terms and normalises per group (the paper's variants); any other
# value names a kernel of :mod:`finemem_lib.core.credit_schemes` that reads the terms the row lists.
CREDIT_RULES = ("grpo", "gigpo", "adrpo", "adrpo_dominant", "hindsight", "broadcast_traj")


@dataclass(frozen=True)
class Variant:
    """One reward variant: how it is named and drawn, and which terms its step reward r_t sums.

    Terms: ``global`` (r_global on every step), ``eara`` (EARA's split of r_global, weighted by beta),
    ``fmt`` (r_fmt), ``comp`` (w2 * r_comp), ``chunk`` (w1 * r_chunk).
    """

    name: str
    label: str
    colour: str
    terms: tuple[str, ...]
    credit: str = "grpo"

    def __post_init__(self) -> None:
        known = TERM_ORDER if self.credit == "grpo" else (*TERM_ORDER, *SCHEME_TERMS)
        unknown = [t for t in self.terms if t not in known]
        if unknown:
            raise ValueError(f"variant {self.name!r}: unknown reward term(s) {unknown}; known: {known}")
        if self.credit not in CREDIT_RULES:
            raise ValueError(f"variant {self.name!r}: credit must be one of {CREDIT_RULES}, got {self.credit!r}")
        object.__setattr__(self, "terms", tuple(t for t in known if t in self.terms))

    def uses(self, term: str) -> bool:
        return term in self.terms


# The variants, in the order tables and figures show them (colours: seaborn's colour-blind palette).
VARIANT_TABLE: tuple[Variant, ...] = (
    Variant("or_only", "OR-only", "#949494", ("global", "fmt", "comp")),
    Variant("csr", "+CSR", "#029e73", ("global", "fmt", "comp", "chunk")),
    Variant("eara", "+EARA", "#cc78bc", ("eara", "fmt", "comp")),
    Variant("finemem", "Fine-Mem", "#d55e00", ("eara", "fmt", "comp", "chunk")),
)
# Other systems' credit schemes under the same memory and reader (docs/credit_schemes.md): rows of the same
# shape, kept out of VARIANTS (the paper's four, which the paper's tables and figures show) but trainable.
SCHEME_TABLE: tuple[Variant, ...] = (
    Variant("gigpo", "GiGPO", "#0173b2", ("global", "fmt", "comp"), credit="gigpo"),
    Variant("gigpo_csr", "GiGPO+CSR", "#56b4e9", ("global", "fmt", "comp", "chunk"), credit="gigpo"),
    Variant("adrpo", "ADRPO", "#de8f05", ("fmt", "chunk"), credit="adrpo"),
    Variant("adrpo_dominant", "ADRPO (dominant step)", "#ece133", ("fmt", "chunk"), credit="adrpo_dominant"),
    Variant("hindsight", "hindsight", "#ca9161", ("hindsight", "fmt", "comp"), credit="hindsight"),
    Variant("broadcast_traj", "per-trajectory", "#fbafe4", ("global", "fmt", "comp"), credit="broadcast_traj"),
)
VARIANTS_BY_NAME: dict[str, Variant] = {v.name: v for v in VARIANT_TABLE}
VARIANTS: tuple[str, ...] = tuple(VARIANTS_BY_NAME)
ROWS_BY_NAME: dict[str, Variant] = {v.name: v for v in (*VARIANT_TABLE, *SCHEME_TABLE)}
SCHEMES: tuple[str, ...] = tuple(v.name for v in SCHEME_TABLE)
TRAINABLE: tuple[str, ...] = (*VARIANTS, *SCHEMES)  # what training.variant(s), the study plans and the CLI accept


def variant(name: str) -> Variant:
    """The table row of a variant or credit scheme; an unknown name is a ValueError listing the known ones."""
    try:
        return ROWS_BY_NAME[name]
    except KeyError:
        raise ValueError(f"variant must be one of {VARIANTS} or a credit scheme {SCHEMES}, got {name!r}") from None


def variant_label(name: str) -> str:
    """The display name of a variant (the name itself for one not in the table, e.g. an ablation point)."""
    row = ROWS_BY_NAME.get(name)
    return row.label if row else name


@dataclass(frozen=True)
class RewardSpec:
    """Everything that turns an episode's reward components into step rewards and advantages.

    ``beta``: EARA's evidence share of r_global; ``w1``: weight of the chunk step reward; ``w2``: weight of
    the compression reward; ``group_mode``: ``step`` normalises each step over the G rollouts, ``episode``
    over all G*T values.
    """

    variant: str = "finemem"
    beta: float = 0.5
    w1: float = 0.5
    w2: float = 0.05
    group_mode: str = "step"

    def __post_init__(self) -> None:
        variant(self.variant)
        if self.group_mode not in GROUP_MODES:
            raise ValueError(f"rewards.group_mode must be one of {GROUP_MODES}, got {self.group_mode!r}")
        if not 0.0 <= float(self.beta) <= 1.0:
            raise ValueError(f"beta must be in [0, 1], got {self.beta}")

    @property
    def row(self) -> Variant:
        """This variant's row of :data:`VARIANT_TABLE`."""
        return variant(self.variant)

    def with_variant(self, name: str) -> RewardSpec:
        return replace(self, variant=name)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def of(cls, variant: str | RewardSpec = "finemem", **knobs: Any) -> RewardSpec:
        """A spec from a variant (or a spec) and knobs; knobs given as None keep the spec's (default) value."""
        base = variant if isinstance(variant, RewardSpec) else cls(variant=variant)
        given = {k: v for k, v in knobs.items() if v is not None}
        unknown = sorted(set(given) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"unknown reward setting(s) {unknown}")
        return replace(base, **given) if given else base

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any], variant: str | None = None, **overrides: Any) -> RewardSpec:
        """The spec of a profile: ``rewards:`` knobs, ``training.variant`` (or ``variant``), then ``overrides``.

        ``overrides`` given as None are ignored."""
        section = cfg.get("rewards") or {}
        if not isinstance(section, Mapping):
            raise ValueError(f"rewards must be a mapping, got {type(section).__name__}")
        # values kept as the profile writes them (an int stays an int): they are part of a run's identity hash
        knobs = {key: section.get(key) for key in ("beta", "w1", "w2", "group_mode")}
        chosen = variant or (cfg.get("training") or {}).get("variant") or cls.variant
        return cls.of(cls.of(str(chosen), **knobs), **overrides)
