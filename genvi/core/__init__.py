"""The modeling language: `@gen`, traces, choice maps, selections and combinators."""

from genvi.core.choice_map import ChoiceMap, Selection, choice_map, select
from genvi.core.combinators import Scan, Switch, Vmap, cond, scan, switch, vmap
from genvi.core.gen_fn import GenCall, GenerativeFunction, Scaled, StaticGenFn, Trace, gen, scale

__all__ = [
    "ChoiceMap", "Selection", "choice_map", "select", "Scan", "Switch", "Vmap", "cond",
    "scan", "switch", "vmap", "GenCall", "GenerativeFunction", "StaticGenFn", "Trace", "gen", "Scaled", "scale",
]
