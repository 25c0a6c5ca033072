"""What the network builder asks of its plug-ins: layer builders, modes and the device's code generation.

:class:`~decolle_brian.network.builder.BrianNetwork` assembles what every network has (traces, LIF groups,
readouts, monitors) and leaves three things to others, each through the hooks of one class here:

- a :class:`LayerBuilder` per (mode, layer kind) builds a layer's neurons and forward synapses;
- a :class:`NetworkMode` (``NetworkSpec.mode``) decides how inputs are fed, what the LIF groups add, which
  per-run arrays exist, and how recorded weights are read;
- a :class:`CodeGeneration` (the device backend, :mod:`decolle_brian.backends`) may replace Brian's generic
  code of some objects with faster device-specific code of the same statements.

The defaults here are the plain choices: no extra per-run arrays, Brian's generic code everywhere.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext

from brian2 import NeuronGroup, Synapses

from decolle_brian.network.chunks import ChunkInputs
from decolle_brian.network.objects import LayerObjects
from decolle_brian.network.packed import COUNT_BITS, PackedInput
from decolle_brian.network.spec import NeuronParams


class LayerBuilder:
    """Builds one layer: its neurons (from ``net``'s group factories) and forward synapses from ``source``.

    Parameters
    ----------
    net : BrianNetwork
        The network being built (group factories, parameter bindings, namespace, code generation).
    index : int
        1-based layer number (names its objects: ``layer<index>``, ``forward<index>``).
    layer : DenseLayerSpec or ConvLayerSpec
    source : NeuronGroup
        The previous layer's output group (the input group for layer 1).
    """

    def __init__(self, net, index: int, layer, source: NeuronGroup):
        self.net, self.index, self.layer, self.source = net, index, layer, source

    def build(self) -> LayerObjects:
        """Create the layer's objects (adding the extra ones to ``net.objects``) and return them."""
        raise NotImplementedError


class NetworkMode:
    """How a network of one mode is fed and run: the hooks the builder and the Simulator call.

    Parameters
    ----------
    net : BrianNetwork
        The network being built; its ``rule_code`` is already the derived code of this mode.
    """

    #: slot in which recorded synapse weights are read (after the step's weight change)
    synapse_probe_slot = "after_resets"

    def __init__(self, net):
        self.net = net

    def input_group(self) -> NeuronGroup:
        """The input neurons, fed with the step's event counts (``net.counts``)."""
        raise NotImplementedError

    def lif_parts(self, lif_equations: str) -> tuple[str, str, dict]:
        """A LIF layer's equations, extra reset statements and extra NeuronGroup arguments."""
        return lif_equations, "", {}

    def lif_group_built(self, group: NeuronGroup) -> None:
        """Add this mode's per-step statements to a new LIF group (called before the layer's own ones)."""

    def probe_synapses(self, layer: int, pre, post) -> None:
        """Whatever else reading the weights of recorded synapses ``(pre, post)`` of ``layer`` needs."""

    def chunk_arrays(self, inputs: ChunkInputs, neuron: NeuronParams) -> dict:
        """Values of this mode's own per-run TimedArrays for one chunk, ``{TimedArray: values}``."""
        return {}

    def weights_in_use(self, stored: list) -> list:
        """Recorded weights per layer (steps, synapses), as the network used them."""
        return stored


class CodeGeneration:
    """Device-specific code of some network objects (the device backend's hooks); here: Brian's own code.

    The network says which objects have a structure a device can exploit; the device decides what to
    generate. The statements are always Brian's, from the same equations: only the loops around them differ.
    """

    def input_counts(self, name: str, steps: int, n: int):
        """How the per-step event counts of the ``n`` input neurons reach a run of ``steps`` steps.

        Returns an object with :class:`~decolle_brian.network.packed.PackedInput`'s input-group interface
        (``equations``, ``namespace``, ``attach``, ``expression``, ``reader``, ``run_values``); the default is
        that class: 8-bit counts packed into a float64 TimedArray, read by Brian's generic code. A device may
        send them another way (C++ standalone: an event list, :mod:`decolle_brian.backends.input_events`).
        """
        return PackedInput(name, steps, n, bits=COUNT_BITS, prefix="count")

    def all_to_all_sums(self, synapses: Synapses, batch: int = 1, skip_rows: dict | None = None) -> None:
        """The summed variables of all-to-all ``synapses`` stored presynaptic-major (k = pre * N_post + post).

        ``batch`` = B: all-to-all within each of B samples side by side (unit j of sample b is j B + b), row k of
        presynaptic unit p stored at p N_post / B + k and reaching unit k B + p mod B. ``skip_rows``: summed
        variable -> presynaptic variable whose value 0 makes its summand 0 (proven by the network): a device
        may skip those rows."""

    def all_to_all_connect(self, synapses: Synapses) -> None:
        """Connect ``synapses`` all-to-all, presynaptic-major (synapse k = pre * N_post + post): ``connect()``.

        A device may create the same synapses another way (C++ standalone: filled in place, not one by one)."""
        synapses.connect()

    def all_to_all_pathway(self, pathway) -> None:
        """An event pathway (zero delay) of all-to-all synapses stored presynaptic-major."""

    def convolution(self, synapses: Synapses, layer, connect, gates, batch: int = 1) -> None:
        """The forward Synapses of conv ``layer`` (kernel elements -> full-resolution units, still empty).

        ``connect()`` creates the explicit synapse list (one synapse per tap inside the input and sample, each
        with its input index ``in_idx``), on which Brian's generic summed variables are exact; that is the
        default. ``batch``: samples side by side sharing the kernel, the sample innermost in every unit index
        (:mod:`decolle_brian.network.batch`).
        A device may instead compute the summed variables in loops over the convolution, with the skips of
        ``gates`` (a :class:`~decolle_brian.network.conv.GradientGates`, proven exact by the builder).
        """
        connect()

    def conv_events(self, pathway, layer, connect, kernel_gate=None) -> None:
        """The event pathway of a conv ``layer`` in mode "event" (previous layer -> full units, still empty).

        ``connect()`` creates one synapse per tap inside the input, each with its kernel element ``k_idx``,
        on which Brian's generic pathway scatters every event exactly; that is the default. A device may
        instead loop over the taps of each event, reading the source's event space. ``kernel_gate``: None, or
        (kernel group, shared variable) whose value 0 proves that the step leaves the kernel unchanged (the
        builder's proof, :func:`decolle_brian.network.conv.gradient_gates`): a device may keep a copy of the
        kernel over such steps.
        """
        connect()

    def gated(self, runner, gate: str) -> None:
        """``runner``'s code (a run_regularly or summed variable) provably changes nothing that the network
        reads while the shared variable ``gate`` is 0; a device may skip it then. Default: Brian's code runs
        on every step."""

    def connecting(self, synapses: Synapses) -> AbstractContextManager:
        """Context of the ``connect`` calls of (very many) ``synapses``."""
        return nullcontext()
