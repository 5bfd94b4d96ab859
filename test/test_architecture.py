"""The package's shape: no import circles (lazy imports included), core depends on nothing
above it, every module stays readable in one sitting, and a new controller is one module plus
one registration (everything else reads its spec)."""

from __future__ import annotations

import ast
import dataclasses
from collections.abc import Iterator
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest
from flax import struct

from mppi_ros.core import catalog
from mppi_ros.core.catalog import ControllerSpec, controller_spec, register_controller
from mppi_ros.core.controllers import make_tuning
from mppi_ros.core.dynamics import get_dynamics
from mppi_ros.engine import EngineSpec, compile_controller, placeholder_track
from mppi_ros.sim.closed_loop import start_state

PACKAGE = Path(__file__).resolve().parents[1] / "mppi_ros"
MAX_LINES = 450


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def _imports(name: str, path: Path, known: dict[str, Path]) -> Iterator[str]:
    """Every mppi_ros module ``name`` imports, at module level or inside a function."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            for alias in node.names:
                full = f"{module}.{alias.name}"
                yield full if full in known else module
        elif isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)


def _graph() -> dict[str, set[str]]:
    known = _modules()
    return {
        name: {m for m in _imports(name, path, known) if m in known and m != name}
        for name, path in known.items()
    }


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle, or None (depth-first search with colours)."""
    colour: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        colour[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if colour.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in colour and (found := visit(nxt)):
                return found
        colour[node] = 2
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in colour and (found := visit(node)):
            return found
    return None


def test_no_module_imports_itself_through_others():
    """Lazy (in-function) imports count: they hide a circle, they do not remove it."""
    cycle = _cycle(_graph())
    assert cycle is None, " -> ".join(cycle)


def test_core_imports_nothing_above_it():
    allowed = ("mppi_ros.core", "mppi_ros.checksums", "mppi_ros.share")
    graph = _graph()
    bad = {
        name: sorted(m for m in deps if not m.startswith(allowed))
        for name, deps in graph.items()
        if name.startswith("mppi_ros.core")
    }
    assert not {k: v for k, v in bad.items() if v}


def test_every_module_reads_in_one_sitting():
    long = {
        str(path.relative_to(PACKAGE.parent)): n
        for path in PACKAGE.rglob("*.py")
        if (n := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert not long, f"modules over {MAX_LINES} lines: {long}"


# --------------------------------------------------------------------------- a new controller


@dataclasses.dataclass(frozen=True)
class CoastConfig:
    dynamics: str = "single_track"
    dt: float = 0.05
    horizon: int = 8


@struct.dataclass
class CoastState:
    key: jnp.ndarray


@dataclasses.dataclass(frozen=True)
class Coast:
    """Commands zero: the smallest controller there is, defined outside the package."""

    config: CoastConfig = CoastConfig()
    name: str = "coast"

    @property
    def model(self):
        return get_dynamics(self.config.dynamics)

    @property
    def reference_horizon(self) -> int:
        return self.config.horizon

    @property
    def dt(self) -> float:
        return self.config.dt

    def default_tuning(self):
        return make_tuning(self.model)

    def init(self, key):
        return CoastState(key=key)

    def step(self, cstate, obs, tuning, key=None):
        return jnp.zeros(self.model.control_dim), cstate, None


@pytest.fixture
def coast():
    spec = ControllerSpec(
        "coast",
        lambda **kw: Coast(CoastConfig(**kw)),
        CoastConfig,
        has_horizon=True,
    )
    register_controller(spec)
    yield spec
    catalog._REGISTRY._items.pop("coast")  # the test's own registration


def test_a_registered_controller_runs_in_the_engine_with_its_spec_only(coast):
    """One registration: the engine builds, compiles and steps it, applies ``horizon``
    because the spec has one and drops ``num_samples`` because it samples nothing."""
    assert controller_spec("coast") is coast
    compiled = compile_controller(EngineSpec(controller="coast", horizon=12, num_samples=64))
    assert compiled.controller.config == CoastConfig(horizon=12)
    assert compiled.model_id == "coast"
    track = placeholder_track(2048)
    state = start_state(compiled.controller.model, track, 3.0)
    result, _ = compiled.step(
        compiled.init_state(0), state, compiled.default_tuning, track.arrays()
    )
    np.testing.assert_array_equal(result.action, np.zeros(2))
    assert result.finite


def test_specs_say_what_the_shipped_controllers_can_do():
    learned = catalog.controller_names(lambda s: s.learned)
    assert learned == ["dpc", "soft_mpcritic", "step_mppi"]
    for name in learned:
        assert catalog.shipped_model_path(name).name == f"f1tenth_{name}"
    assert not controller_spec("dpc").samples and controller_spec("step_mppi").samples
    assert controller_spec("mppi").has_horizon and not controller_spec("step_mppi").has_horizon
    with pytest.raises(ValueError, match="valid names: " + ", ".join(catalog.controller_names())):
        controller_spec("ilqr")
