"""``~/candidates``: the sampled paths a step reports (their states follow the sampled
controls through the step's model, their weights are the step's), the markers built from
them, and the node building them only while someone subscribes."""

from __future__ import annotations

import threading
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from builtin_interfaces.msg import Time
from visualization_msgs.msg import Marker, MarkerArray

from mppi_ros.core.catalog import make_controller
from mppi_ros.core.controllers import CANDIDATE_COUNT
from mppi_ros.core.controllers.mppi import rollout, safe_softmax_weights
from mppi_ros.core.policy import observe
from mppi_ros.core.tracks import load_track
from mppi_ros.ros.controller.visualisation import candidates_markers, weight_colours
from mppi_ros.ros.graph import driving_graph, graph_parameters
from mppi_ros.sim.closed_loop import start_state


@pytest.fixture(scope="module")
def setting():
    track = load_track("default")
    return track.arrays(), track


def _observed(ctrl, arrays, track):
    tuning = ctrl.default_tuning()
    x0 = jnp.asarray(start_state(ctrl.model, arrays, float(tuning.reference_speed)))
    obs, window = observe(ctrl, arrays, x0, tuning)
    return obs, window, tuning


def test_mppi_candidates_are_the_first_samples_rollouts_with_their_weights(setting):
    arrays, track = setting
    ctrl = make_controller("mppi", num_samples=64, horizon=10)
    obs, _, tuning = _observed(ctrl, arrays, track)
    cstate = ctrl.init(jax.random.PRNGKey(0))
    eps = jax.random.normal(jax.random.PRNGKey(1), ctrl.noise_shape)
    _, _, info = ctrl.step_with_noise(cstate, obs, tuning, eps)
    got = info.candidates
    assert got.states.shape == (CANDIDATE_COUNT, 11, ctrl.model.state_dim)
    np.testing.assert_allclose(got.states[:, 0], np.broadcast_to(obs.state, (32, len(obs.state))))
    # Recomputed outside the step: the sampled controls, their rollouts and softmax weights.
    lo, hi = ctrl.model.control_bounds(tuning.model_params)
    e = eps.at[0].set(0.0) if ctrl.config.include_nominal else eps
    controls = jnp.clip(cstate.plan + tuning.noise_std * cstate.scale * e, lo, hi)
    step_fn = ctrl._step_fn()
    run = jax.vmap(rollout, in_axes=(None, None, None, 0, None, None))
    costs, states = run(step_fn, ctrl.model, obs.state, controls, obs, tuning)
    weights = safe_softmax_weights(costs, tuning.temperature)
    np.testing.assert_allclose(got.states[:, 1:], states[:CANDIDATE_COUNT], atol=1e-5)
    np.testing.assert_allclose(got.weights, weights[:CANDIDATE_COUNT], rtol=1e-4, atol=1e-7)
    assert float(jnp.sum(got.weights)) <= 1.0 + 1e-5


def test_step_mppi_candidates_are_the_first_samples_next_states(setting):
    arrays, track = setting
    ctrl = make_controller("step_mppi")
    obs, _, tuning = _observed(ctrl, arrays, track)
    cstate = ctrl.init(jax.random.PRNGKey(0))
    eps = jax.random.normal(jax.random.PRNGKey(1), ctrl.noise_shape)
    _, _, info = ctrl.step_with_noise(cstate, obs, tuning, eps)
    mu, chol = info.mean, info.chol
    step_fn = ctrl.model.discrete(ctrl.config.dt, ctrl.config.integrator)
    samples = mu + eps[:CANDIDATE_COUNT] @ chol.T
    expected = jax.vmap(lambda u: step_fn(obs.state, u, tuning.model_params))(samples)
    assert info.candidates.states.shape == (CANDIDATE_COUNT, 2, ctrl.model.state_dim)
    np.testing.assert_allclose(info.candidates.states[:, 1], expected, atol=1e-5)
    # The heaviest shown sample is the one closest to the weighted control's next state.
    assert float(jnp.max(info.candidates.weights)) > 0


def test_markers_draw_each_path_in_its_weight_colour():
    xy = np.stack([np.c_[np.arange(4.0), np.full(4, float(k))] for k in range(3)])
    weights = np.array([0.5, 0.0, 0.25])
    markers = candidates_markers(xy, weights, "map", Time(sec=3)).markers
    assert [m.id for m in markers] == [0, 1, 2]
    assert all(m.type == Marker.LINE_STRIP and m.header.frame_id == "map" for m in markers)
    assert [(p.x, p.y) for p in markers[2].points] == [
        (0.0, 2.0),
        (1.0, 2.0),
        (2.0, 2.0),
        (3.0, 2.0),
    ]
    heavy, none, half = weight_colours(weights)
    assert [m.color for m in markers] == [heavy, none, half]
    assert heavy.r == 1.0 and heavy.a == 1.0 and none.b == 1.0 and none.a == 0.25
    assert half.r == pytest.approx(0.5)
    assert all(c.a == 0.25 for c in weight_colours(np.zeros(3)))  # no division by zero


@pytest.mark.slow
def test_the_node_builds_candidates_and_prediction_only_while_subscribed(tmp_path):
    params = graph_parameters("default", "mppi", 50.0, "array")
    received: list[MarkerArray] = []
    lock = threading.Lock()

    def store(msg: MarkerArray) -> None:
        with lock:
            received.append(msg)

    with driving_graph(params, "array", tmp_path, 180.0) as (_, monitor):

        def built() -> tuple[int, int]:
            diag = monitor.diagnostic("mppi_controller")
            return int(diag["candidates_built"]), int(diag["prediction_built"])

        time.sleep(1.5)  # diagnostics come every 0.5 s
        assert built() == (0, 0)  # nobody subscribed: nothing built
        sub = monitor.node.create_subscription(MarkerArray, "/mppi_controller/candidates", store, 1)
        monitor.wait_for(lambda: len(received) >= 20, 60.0, "20 candidate marker arrays")
        monitor.node.destroy_subscription(sub)
        with lock:
            markers = received[-1].markers
        assert len(markers) == CANDIDATE_COUNT
        # mppi's default horizon: each path is the start state and one state per plan step
        assert {len(m.points) for m in markers} == {make_controller("mppi").config.horizon + 1}
        assert {m.header.frame_id for m in markers} == {"map"}
        odom = monitor.recording.odom[-1]
        start = np.array([markers[0].points[0].x, markers[0].points[0].y])
        assert np.hypot(*(start - odom[1:3])) < 2.0  # the paths start at the car
        time.sleep(1.5)  # the unsubscription travels, the diagnostics refresh
        first = built()
        assert first[0] >= 20 and first[1] == 0
        time.sleep(1.5)
        assert built() == first  # no subscriber: no more built


GRAPH_TOPICS = {
    "/reference",
    "/border_left",
    "/border_right",
    "/odom",
    "/cmd",
    "/diagnostics",
    "/mppi_controller/prediction",
    "/mppi_controller/candidates",
    "/mppi_controller/loop_timing",
}


def test_rviz_and_foxglove_configs_show_the_graphs_topics(repo_root):
    import json

    import yaml

    folder = repo_root / "config" / "visualisation"
    rviz = yaml.safe_load((folder / "mppi_ros.rviz").read_text())
    displays = rviz["Visualization Manager"]["Displays"]
    topics = {d["Topic"]["Value"]: d for d in displays if "Topic" in d}
    assert set(topics) <= GRAPH_TOPICS
    assert topics["/mppi_controller/candidates"]["Class"] == "rviz_default_plugins/MarkerArray"
    # The track is latched: RViz must ask for transient local to get it.
    assert topics["/reference"]["Topic"]["Durability Policy"] == "Transient Local"
    assert rviz["Visualization Manager"]["Global Options"]["Fixed Frame"] == "map"
    layout = json.loads((folder / "mppi_ros.foxglove.json").read_text())
    panels = layout["configById"]
    shown = set(panels["3D!track"]["topics"])
    plotted = {
        p["value"].split(".")[0]
        for k, v in panels.items()
        if k.startswith("Plot")
        for p in v["paths"]
    }
    assert {"/mppi_controller/candidates", "/mppi_controller/prediction"} <= shown <= GRAPH_TOPICS
    assert plotted <= GRAPH_TOPICS
    ids = json.dumps(layout["layout"])
    assert all(panel in ids for panel in panels)  # every configured panel is placed
