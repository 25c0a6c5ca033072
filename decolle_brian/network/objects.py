"""Typed records of a built network: what it records (:class:`Probes`), how parameter arrays map onto Brian
variables (:class:`ParamBinding`) and the Brian objects of one layer (:class:`LayerObjects`)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

import numpy as np
from brian2 import NeuronGroup, Synapses

from decolle_brian.network.packed import PackedInput


@dataclass(frozen=True)
class Probes:
    """What a network records at every step of a run, beyond readouts and spike counts.

    The indices are compiled into the monitors, so the cost of a run grows with what is recorded, not with
    the size of the network (:mod:`decolle_brian.recording` chooses them).

    Attributes
    ----------
    variables : tuple of str
        Layer variables (``u``, ``p``, ``q``, ``r``, ``delta``, ``bp``, ...), each recorded in every layer
        that has it, for ``neurons``.
    neurons : tuple, optional
        Per layer (1-based layer k at position k - 1): a tuple of neuron indices (``()``: nothing) or None
        (every neuron). None, or a layer beyond the tuple: every neuron.
    input_variables : tuple of str
        Variables of the input group (``q``, ``p``), recorded for ``input_neurons``.
    input_neurons : tuple of int, optional
        Input neurons (None: every one).
    synapses : tuple, optional
        Per layer: ``(post, pre)`` pairs of dense forward synapses whose weight ``w`` is recorded after the
        learning step of every step (so ``w[t] - w[t-1]`` is the change made at step t).
    spikes : bool
        A SpikeMonitor of every neuron of every layer.
    conv_full : bool
        Conv layers also record ``variables`` of all their full-resolution units.
    """

    variables: tuple[str, ...] = ()
    neurons: tuple | None = None
    input_variables: tuple[str, ...] = ()
    input_neurons: tuple[int, ...] | None = None
    synapses: tuple = ()
    spikes: bool = False
    conv_full: bool = False

    @classmethod
    def of(cls, probes) -> Probes:
        """A Probes from itself or from a tuple of variable names (every neuron, conv full resolution too)."""
        return probes if isinstance(probes, Probes) else cls(variables=tuple(probes), conv_full=True)

    def layer_neurons(self, layer: int):
        """Brian's ``record`` argument for layer ``layer`` (1-based): True or an index array."""
        if self.neurons is None or layer > len(self.neurons) or self.neurons[layer - 1] is None:
            return True
        return np.asarray(self.neurons[layer - 1], dtype=int)

    def tag(self) -> str:
        """Short text that tells build folders of different probes apart."""
        if self == Probes(variables=self.variables, conv_full=True):
            return "".join(f"-{v}" for v in self.variables)  # the plain tuple form, as before
        if self == Probes():
            return ""
        text = json.dumps([self.variables, self.neurons, self.input_variables, self.input_neurons,
                           self.synapses, self.spikes, self.conv_full], default=list)
        return "-rec" + hashlib.sha1(text.encode()).hexdigest()[:10]


@dataclass
class ParamBinding:
    """How one parameter array maps onto a Brian variable (and back)."""

    view_owner: object
    variable: str
    to_brian: callable
    from_brian: callable


@dataclass
class LayerObjects:
    """Brian objects of one layer (neurons, forward synapses, readout and its helpers)."""

    group: NeuronGroup
    forward: Synapses
    readout: NeuronGroup | None = None
    readout_synapses: Synapses | None = None
    reduction_synapses: list = field(default_factory=list)
    counter: NeuronGroup | None = None
    counter_synapses: Synapses | None = None
    mask_array: PackedInput | None = None  # dropout mask bits of the layer's output group
