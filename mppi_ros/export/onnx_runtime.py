"""Runs a bundle's ``controller.onnx`` with onnxruntime: NumPy in, NumPy out, no JAX.

This module imports only the standard library, NumPy and onnxruntime, so a vehicle computer
with ``onnxruntime-gpu`` and no JAX can run a trained controller::

    policy = OnnxPolicy("models/f1tenth_step_mppi")
    action, info = policy.step(state, track_inputs(s, xy, psi, speed, border, length))

The graph is the deployed policy step (track projection, reference window, normalisation,
network, sampling from the given noise, one model step, costs and penalties, softmax
weights, weighted mean); noise is drawn here with NumPy, so results are reproducible from a
seed and comparable with the JAX step for the same noise.

A controller with a warm start (classic MPPI, exported to a standalone ``.onnx`` file) keeps
it explicit: ``info.carry`` of one step goes into the next (``carry=``); nothing is hidden in
the policy object::

    policy = OnnxPolicy("mppi.onnx")
    carry = policy.init_carry()
    action, info = policy.step(state, track, carry=carry)
    carry = info.carry
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from mppi_ros.checksums import sha256_file

ONNX_FILE = "controller.onnx"
TRACK_FIELDS = ("s", "xy", "psi", "speed", "border", "length")
TUNING_PREFIX = "tuning."
TRACK_PREFIX = "track."
CARRY_PREFIX = "carry."
NEXT_PREFIX = "next."
SPEC_KEY = "mppi_ros"  # metadata entry of the exported file holding the spec


class OnnxBundleError(ValueError):
    """A bundle whose ONNX controller must not be run; the message names the problem."""


def available_providers() -> list[str]:
    """onnxruntime's execution providers in preference order (CUDA first when present)."""
    import onnxruntime as ort

    have = ort.get_available_providers()
    return [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in have]


def read_onnx_spec(bundle: str | Path) -> tuple[Path, dict[str, Any]]:
    """The verified path of ``controller.onnx`` and the manifest's ``onnx`` section.

    Raises:
        OnnxBundleError: No manifest, no exported controller, or a checksum mismatch.
    """
    bundle = Path(bundle)
    try:
        manifest = json.loads((bundle / "manifest.json").read_text())
    except FileNotFoundError:
        raise OnnxBundleError(f"model bundle {bundle} has no manifest.json") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise OnnxBundleError(
            f"model bundle {bundle}: manifest.json is not valid JSON ({err})"
        ) from None
    entry = manifest.get("files", {}).get(ONNX_FILE)
    spec = manifest.get("onnx")
    if entry is None or not isinstance(spec, dict):
        raise OnnxBundleError(
            f"model bundle {bundle} has no exported {ONNX_FILE}; run "
            f"`mppi-ros export onnx {bundle}` first"
        )
    path = bundle / ONNX_FILE
    if not path.is_file():
        raise OnnxBundleError(f"model bundle {bundle} is missing {ONNX_FILE}")
    if sha256_file(path) != entry.get("sha256"):
        raise OnnxBundleError(
            f"model bundle {bundle}: {ONNX_FILE} does not match its SHA-256 in the manifest "
            "(corrupt or modified file)"
        )
    return path, spec


def track_inputs(
    s: np.ndarray,
    xy: np.ndarray,
    psi: np.ndarray,
    speed: np.ndarray,
    border: np.ndarray,
    length: float,
) -> dict[str, np.ndarray]:
    """Feeds for the raceline inputs (arc length, positions, headings, speed profile, border
    half-planes ``(a, b, c_left, c_right)`` per point, lap length), all float32."""
    values = dict(s=s, xy=xy, psi=psi, speed=speed, border=border, length=length)
    return {TRACK_PREFIX + k: np.asarray(v, np.float32) for k, v in values.items()}


@dataclasses.dataclass(frozen=True)
class OnnxStepInfo:
    """What one ONNX step returns besides the action."""

    lateral_error: float
    finite: bool
    predicted_states: np.ndarray | None  # (steps + 1, nx) or None (DPC)
    carry: dict[str, np.ndarray] | None = None  # warm start for the next step (classic MPPI)


class OnnxPolicy:
    """An exported controller step on onnxruntime (CUDA when available, else CPU).

    Args:
        bundle: Bundle folder holding ``controller.onnx``, or a standalone exported ``.onnx``
            file (classic controllers; its spec is read from the file's metadata and there is
            no manifest checksum to verify).
        providers: Execution providers to try; default :func:`available_providers`.
        seed: Seed of the NumPy generator that draws the sampling noise.
        threads: Intra-op threads (0: onnxruntime's default, a pool of one per core). With
            1 every op runs on the calling thread and no pool thread is started.
        num_samples: K (0: the bundle's); the graph takes any K, so this needs no re-export.
    """

    def __init__(
        self,
        bundle: str | Path,
        providers: list[str] | None = None,
        seed: int = 0,
        threads: int = 0,
        num_samples: int = 0,
    ) -> None:
        import onnxruntime as ort

        standalone = Path(bundle).is_file()
        if standalone:
            path, spec = Path(bundle), None
        else:
            path, spec = read_onnx_spec(bundle)
        self.bundle = Path(bundle)
        options = ort.SessionOptions()
        options.log_severity_level = 3  # the exporter leaves unused initialisers: not news
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1  # sequential execution: the inter-op pool is unused
        try:
            self.session = ort.InferenceSession(
                str(path), options, providers=providers or available_providers()
            )
        except Exception as err:  # onnxruntime raises its own untyped errors
            raise OnnxBundleError(
                f"model bundle {bundle}: onnxruntime cannot load {path.name} ({err})"
            ) from None
        if standalone:
            meta = self.session.get_modelmeta().custom_metadata_map
            if SPEC_KEY not in meta:
                raise OnnxBundleError(f"{bundle} is not an mppi-ros export (no {SPEC_KEY!r} spec)")
            spec = json.loads(meta[SPEC_KEY])
        self.spec = spec
        self.provider = self.session.get_providers()[0]
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]
        control_dims = spec["noise_shape"][1:]
        k = num_samples or int(spec["num_samples"])
        if control_dims and spec["noise_shape"][0] != "K" and k != int(spec["num_samples"]):
            raise OnnxBundleError(
                f"{bundle} was exported for num_samples {spec['num_samples']}, not {k}; "
                "re-export with --num-samples"
            )
        self.noise_shape = (k, *control_dims) if control_dims else ()
        self.reference_points = int(spec["reference_points"])
        self.default_tuning = {
            TUNING_PREFIX + k: np.asarray(v, np.float32) for k, v in spec["tuning"].items()
        }
        self.initial_carry = {
            name: np.asarray(value, np.float32) for name, value in spec.get("carry", {}).items()
        }
        self.rng = np.random.default_rng(seed)

    def init_carry(self) -> dict[str, np.ndarray] | None:
        """The warm start of a first step (None for controllers without one)."""
        if not self.initial_carry:
            return None
        return {name: value.copy() for name, value in self.initial_carry.items()}

    def draw_noise(self, rng: np.random.Generator | None = None) -> np.ndarray | None:
        """Standard normal noise of ``noise_shape`` from ``rng`` (default: the policy's own);
        None for DPC."""
        if not self.noise_shape:
            return None
        return (rng or self.rng).standard_normal(self.noise_shape, dtype=np.float32)

    def feeds(
        self,
        state: np.ndarray,
        track: Mapping[str, np.ndarray],
        tuning: Mapping[str, np.ndarray] | None = None,
        noise: np.ndarray | None = None,
        carry: Mapping[str, np.ndarray] | None = None,
    ) -> dict[str, np.ndarray]:
        """Input dict for one step; ``tuning`` entries override the exported defaults;
        ``carry`` is the previous step's ``info.carry`` (default: :meth:`init_carry`)."""
        feeds = dict(self.default_tuning)
        if tuning:
            feeds.update(tuning)
        feeds.update(track)
        feeds["state"] = np.asarray(state, np.float32)
        if self.noise_shape:
            feeds["noise"] = self.draw_noise() if noise is None else np.asarray(noise, np.float32)
        for name, value in (carry or self.initial_carry).items():
            feeds[CARRY_PREFIX + name] = np.asarray(value, np.float32)
        missing = [n for n in self.input_names if n not in feeds]
        if missing:
            raise ValueError(f"missing ONNX inputs {missing}")
        return feeds

    def run(self, feeds: dict[str, np.ndarray]) -> tuple[np.ndarray, OnnxStepInfo]:
        """One step from prepared feeds (see :meth:`feeds`)."""
        out = dict(zip(self.output_names, self.session.run(self.output_names, feeds), strict=True))
        packed = out["packed"]
        carry = {
            name[len(NEXT_PREFIX) :]: value
            for name, value in out.items()
            if name.startswith(NEXT_PREFIX)
        }
        info = OnnxStepInfo(
            lateral_error=float(packed[-2]),
            finite=bool(packed[-1] == 1.0),
            predicted_states=out.get("predicted_states"),
            carry=carry or None,
        )
        return packed[:-2].astype(np.float64), info

    def step(
        self,
        state: np.ndarray,
        track: Mapping[str, np.ndarray],
        tuning: Mapping[str, np.ndarray] | None = None,
        noise: np.ndarray | None = None,
        carry: Mapping[str, np.ndarray] | None = None,
    ) -> tuple[np.ndarray, OnnxStepInfo]:
        """The control for ``state`` on ``track`` (see :func:`track_inputs`)."""
        return self.run(self.feeds(state, track, tuning, noise, carry))
