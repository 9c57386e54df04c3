"""Haiku models the experiments train: a DNC, an NTM or an LSTM over time.

A preset's ``kind`` picks the model (``dnc`` when absent): ``dnc`` a
:class:`~dnc_jax.DNC`, ``ntm`` the Neural Turing Machine of
:mod:`dnc_jax.ntm` (Extended Data Table 1's baseline), ``lstm`` (bAbI only)
one LSTM and a linear read-out, ``brsdnc`` (bAbI only) Franke et al.'s
bidirectional DNC (:mod:`experiments.bidirectional`). Its ``model`` section
holds the fields of :class:`~dnc_jax.DNCConfig` or
:class:`~dnc_jax.ntm.NTMConfig`; :func:`model_config` builds the one the
kind needs. A model with bypass dropout (:func:`uses_dropout`) is trained
through a second apply that takes an rng (``Model.train_apply``).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Dict, NamedTuple, Optional, Union

import haiku as hk

from dnc_jax import DNC, DNCConfig, unroll
from dnc_jax.ntm import NTM, NTMConfig
from experiments.bidirectional import BrsDNC

MODEL_KINDS = ("dnc", "ntm", "lstm", "brsdnc")
ModelConfig = Union[DNCConfig, NTMConfig]
_CONFIGS = {"dnc": DNCConfig, "ntm": NTMConfig, "lstm": DNCConfig,
            "brsdnc": DNCConfig}


def check_kind(kind: str, allowed=MODEL_KINDS):
  """Raises a one-line ``ValueError`` unless ``kind`` is one of ``allowed``."""
  if kind not in allowed:
    raise ValueError(f"model kind must be one of {tuple(allowed)}, got "
                     f"{kind!r}")


def _check_config(kind: str, config):
  if not isinstance(config, _CONFIGS[kind]):
    raise TypeError(f"model kind {kind!r} needs a {_CONFIGS[kind].__name__},"
                    f" got {type(config).__name__}")


def model_config(kind: str, fields: Dict[str, Any], input_size: int,
                 output_size: int) -> ModelConfig:
  """The config of a ``kind`` model from a preset's ``model`` section.

  ``dnc`` and ``brsdnc``: a :class:`~dnc_jax.DNCConfig` of ``fields``
  (for ``brsdnc`` the forward DNC's; the backward LSTM takes its
  ``hidden_size`` and ``controller_layer_norm``); ``ntm``: an
  :class:`~dnc_jax.ntm.NTMConfig` of ``fields``; ``lstm``: a
  :class:`~dnc_jax.DNCConfig` whose ``hidden_size`` alone is used (the other
  fields are ignored, as the LSTM has no memory).

  Raises:
    ValueError: an unknown kind, or fields the kind's config lacks (named,
      e.g. ``link_sparsity`` for an NTM), or a bad value.
  """
  check_kind(kind)
  if kind == "lstm":
    return DNCConfig(output_size=output_size, input_size=input_size,
                     hidden_size=fields["hidden_size"])
  cls = _CONFIGS[kind]
  known = {f.name for f in dataclasses.fields(cls)} - {"output_size",
                                                       "input_size"}
  unknown = sorted(set(fields) - known)
  if unknown:
    raise ValueError(
        f"model setting{'s' if len(unknown) > 1 else ''} "
        f"{', '.join(unknown)} do{'' if len(unknown) > 1 else 'es'} not "
        f"apply to model kind {kind!r} ({cls.__name__})")
  return cls(output_size=output_size, input_size=input_size, **fields)


def config_from_record(kind: str, fields: Dict[str, Any]) -> ModelConfig:
  """A config saved as ``dataclasses.asdict`` in a run record, rebuilt."""
  check_kind(kind)
  return _CONFIGS[kind](**fields)


def unrolled_dnc(config: DNCConfig) -> hk.Transformed:
  """``apply(params, inputs [T, B, X]) -> logits [T, B, output_size]``."""

  def forward(inputs):
    core = DNC(config)
    outputs, _ = hk.dynamic_unroll(core, inputs,
                                   core.initial_state(inputs.shape[1]))
    return outputs

  return hk.without_apply_rng(hk.transform(forward))


def recording_dnc(config: DNCConfig) -> hk.Transformed:
  """Like :func:`unrolled_dnc`, also returning what the memory did.

  ``apply(params, inputs) -> (logits [T, B, Y], interface, states)`` where
  ``interface`` is the :class:`~dnc_jax.MemoryInterface` of every step (leading
  axis ``T``) and ``states`` the :class:`~dnc_jax.DNCState` after every step.
  Parameters are shared with :func:`unrolled_dnc`.
  """

  def forward(inputs):
    core = DNC(config, return_interface=True)
    (outputs, interface), states = hk.dynamic_unroll(
        core, inputs, core.initial_state(inputs.shape[1]),
        return_all_states=True)
    return outputs, interface, states

  return hk.without_apply_rng(hk.transform(forward))


def unrolled_ntm(config: NTMConfig) -> hk.Transformed:
  """``apply(params, inputs [T, B, X]) -> logits [T, B, output_size]``."""

  def forward(inputs):
    core = NTM(config)
    outputs, _ = hk.dynamic_unroll(
        core, inputs, core.initial_state(inputs.shape[1], inputs.dtype))
    return outputs

  return hk.without_apply_rng(hk.transform(forward))


def uses_dropout(kind: str, config: ModelConfig) -> bool:
  """Whether a ``kind`` model with ``config`` drops units in training.

  Only the DNCs' bypass dropout (``dnc`` and ``brsdnc`` with
  ``config.bypass_dropout > 0``); such a model trains through
  ``babi_model(..., is_training=True)`` with an rng.
  """
  return (kind in ("dnc", "brsdnc") and isinstance(config, DNCConfig)
          and config.bypass_dropout > 0)


def babi_model(kind: str, config: ModelConfig,
               remat_chunk: Optional[int] = None, *,
               is_training: bool = False) -> hk.Transformed:
  """``apply(params, one_hot [T, B, V]) -> logits [T, B, V]`` for bAbI.

  ``kind`` is ``"dnc"`` (a :class:`~dnc_jax.DNC` with ``config``),
  ``"ntm"`` (an :class:`~dnc_jax.ntm.NTM` with an ``NTMConfig``),
  ``"lstm"``: the paper's LSTM baseline, one ``hk.LSTM`` of
  ``config.hidden_size`` units and a linear read-out, no memory, or
  ``"brsdnc"``: :class:`experiments.bidirectional.BrsDNC` with ``config``.

  ``is_training=True`` (only for a model that :func:`uses_dropout`): the
  DNC's bypass dropout is on and ``apply(params, rng, one_hot)`` takes an
  rng; the parameters are the same as without it.
  """
  check_kind(kind)
  _check_config(kind, config)
  if is_training and not uses_dropout(kind, config):
    raise ValueError(f"is_training=True is for models with dropout; model "
                     f"kind {kind!r} with this config has none")

  def forward(inputs):
    if kind == "brsdnc":
      return BrsDNC(config)(inputs, is_training=is_training,
                            remat_chunk=remat_chunk)
    if kind == "dnc":
      core = DNC(config, is_training=is_training)
    elif kind == "ntm":
      core = NTM(config)
    else:
      core = hk.DeepRNN([hk.LSTM(config.hidden_size, name="lstm"),
                         hk.Linear(config.output_size, name="output")])
    if kind in ("ntm", "dnc"):  # State in the inputs' dtype (a scan's carry).
      state = core.initial_state(inputs.shape[1], inputs.dtype)
    else:
      state = core.initial_state(inputs.shape[1])
    outputs, _ = unroll(core, inputs, state, remat_chunk=remat_chunk)
    return outputs

  transformed = hk.transform(forward)
  return transformed if is_training else hk.without_apply_rng(transformed)


class CoreModel(NamedTuple):
  """A model a step at a time, for closed-loop tasks.

  Attributes:
    initial_state: ``initial_state(params, batch_size) -> state``.
    step: ``step(params, x [B, X], state) -> (y [B, Y], state)``.
  """

  initial_state: Callable
  step: Callable


class Model(NamedTuple):
  """What the trainer hands a task: the sequence model and, if any, its core.

  Attributes:
    init: ``init(rng, inputs [T, B, X]) -> params``.
    apply: ``apply(params, inputs [T, B, X]) -> outputs [T, B, Y]``,
      deterministic (evaluation; training too without ``train_apply``).
    core: the same parameters a step at a time (``None`` if unavailable).
    train_apply: for a model with dropout, ``train_apply(params, rng,
      inputs) -> outputs`` with dropout on; the trainer's open-loop step
      uses it with the step's key. ``None``: no dropout.
  """

  init: Callable
  apply: Callable
  core: Optional[CoreModel] = None
  train_apply: Optional[Callable] = None


def _stepwise(make_core: Callable[[], hk.RNNCore]) -> CoreModel:
  """A core one step at a time, its parameters those of the unrolled model.

  ``make_core`` is called inside the transform, so the module names (and
  hence the parameters) match the unrolled model's.
  """

  def functions():
    core = make_core()

    def init(inputs):
      return core(inputs, core.initial_state(inputs.shape[0]))

    def initial_state(batch_size):
      return core.initial_state(batch_size)

    def step(inputs, state):
      return core(inputs, state)

    return init, (initial_state, step)

  transformed = hk.without_apply_rng(hk.multi_transform(functions))
  initial_state, step = transformed.apply
  return CoreModel(initial_state, step)


def dnc_core(config: DNCConfig) -> CoreModel:
  """:func:`unrolled_dnc`'s DNC one step at a time (same parameters)."""
  return _stepwise(lambda: DNC(config))


def ntm_core(config: NTMConfig) -> CoreModel:
  """:func:`unrolled_ntm`'s NTM one step at a time (same parameters)."""
  return _stepwise(lambda: NTM(config))


def dnc_model(config: DNCConfig) -> Model:
  """The DNC as a :class:`Model`: unrolled, and a step at a time."""
  unrolled = unrolled_dnc(config)
  return Model(unrolled.init, unrolled.apply, dnc_core(config))


def ntm_model(config: NTMConfig) -> Model:
  """The NTM as a :class:`Model`: unrolled, and a step at a time."""
  unrolled = unrolled_ntm(config)
  return Model(unrolled.init, unrolled.apply, ntm_core(config))


def sequence_model(kind: str, config: ModelConfig) -> Model:
  """The bit tasks' model of ``kind`` (``"dnc"`` or ``"ntm"``)."""
  check_kind(kind, ("dnc", "ntm"))
  _check_config(kind, config)
  return dnc_model(config) if kind == "dnc" else ntm_model(config)
