"""Conv layers as loops over the convolution, used by the C++ standalone backend (``templates/conv_*.cpp``).

A conv layer's forward Synapses (kernel element -> full-resolution unit, ``equations/conv_forward.eq``) have
two summed variables: the forward sum ``u_syn_post = w_pre * p_in`` and the kernel gradient ``gw_pre``
(the derived summand, :func:`decolle_brian.emission.conv_code`). Brian runs a summed variable as a loop over
a synapse list (``target[index[s]] += value[s]``), which needs every tap of every position stored as a
synapse (three int32 each: 251 M synapses, 3 GB, for DvsGesture). Here the Synapses stay empty (no
``connect``); the two summed variables run in loops over the convolution itself, in which the synapse's
indices are loop arithmetic:

    kernel element  _presynaptic_idx  = ((o c_in + c) k + a) k + e
    full unit       _postsynaptic_idx = (o H_full + y) W_full + x
    input           in_idx            = (c H + y + a - pad) W + x + e - pad      (taps inside the input only)

The statements run are Brian's own vector code generated from the equations and the derived rule; only the
loads of these three indices from per-synapse arrays are replaced (:func:`conv_code_lines`, which refuses
code that reads any other per-synapse value). The loops:

- ``conv_forward_sum`` (onto the full units): for each block of output channels (:func:`channel_block`),
  input channel, tap and channel of the block, the tap's kernel element is a loop invariant and the innermost
  loop runs along a row of the output and of the input (contiguous, vectorised), adding into the block's local
  sums: c_out c_in k^2 H_full W_full multiply-adds per step, each input row read once per block. A kernel of
  k > 1 instead adds the k taps of a kernel row to each unit's block of sums in registers (``TAP_BLOCK``
  channels; one load and store per unit and kernel row, not per tap: 3.3x on DvsGesture's conv 3);
- ``conv_gradient_sum`` (onto the kernel elements): every step the target is set to 0; when the ``gate`` variable (the
  kernel group's step size ``lr``) is 0 nothing else runs, else only full units whose ``skip_zero`` variable (their
  learning signal ``delta``) is non-zero add their taps: (units with a learning signal) x c_in k^2 multiply-adds. The
  builder proves both skips exact before asking for them (:func:`decolle_brian.network.conv.gradient_gates`). The
  inputs are read from a copy made once per learning step (``in_idx`` indexes that copy, :func:`conv_code_lines`
  points the reads there). For every kernel but a 1 x 1 kernel without padding (so k > 1, and k = 1 with padding > 0),
  where the builder proved that a zero input makes the summand 0 (``zero_input``, the derived ``delta_post*p_in``): a
  zero-padded copy, tile-major in tiles of ``GRAD_LANES`` input channels, whose sums of a kernel row's k taps over the
  units with a learning signal stay in registers while the tile's padded input stays in the L1 cache (the taps on the
  padding add exact zeros instead of being bounded: the same sums for finite values, IEEE's 0 * inf being NaN);
  otherwise channel-last, the sums of one tap in registers for ``GRAD_TILE`` input channels at a time. Tile-major for
  k = 1 without padding (the batched dense layer), in 4 x ``GEMM_TILE`` register tiles. Each element receives the same
  non-zero terms in the same order as over the synapse list's units, so the sums agree to the bit.

A batched conv layer (``NetworkSpec.batch_size = B > 1``, docs/batch.md) has the sample as the innermost axis of
every unit and input index (``((o H_full + y) W_full + x) B + b``; :mod:`decolle_brian.network.batch`) and one
kernel for all samples: ``ConvGeometry.batch = B`` selects ``templates/conv_*_sum_batch.cpp``. The forward sum
runs along a row of (x, b) values (vectorised), adding the k taps of a kernel row to each unit in a register
(one load and store per unit and kernel row, not per tap); the gradient is the loop above summed over positions
and samples (units (y, x, b) row-major, a fixed order). Batch 1 uses the templates above.

Precision (``NetworkSpec.precision``, docs/batch.md "float32"): the templates' copies and sums take the variables'
own C type (``c_data_type``: ``double``, or ``float`` in a float32 build), so a float32 build computes in float
with twice the vector lanes. Register tiles sized for float64 are resized for float32 where measured
(:data:`ROW_LANES`: the 1 x 1 forward sum's rows padded to whole registers, the extra lanes summing zeros that are
never read; :data:`GEMM_TILES`); float64 builds keep their loops.

Memory: nothing per synapse; the kernel, the units and the code. brian2cuda and the runtime device keep the
explicit synapse list (:meth:`decolle_brian.network.hooks.CodeGeneration.convolution`).
"""

from __future__ import annotations

import re
import weakref
from dataclasses import asdict, dataclass

import numpy as np
from brian2.codegen.generators.cpp_generator import c_data_type
from brian2.core.variables import ArrayVariable
from brian2.devices.cpp_standalone.codeobject import CPPStandaloneCodeObject

from decolle_brian.backends.templating import package_templater
from decolle_brian.network.proofs import vanishes_at_zero


@dataclass(frozen=True)
class ConvGeometry:
    """Sizes of one conv layer (stride 1, square kernel, zero padding), as the loop templates read them.

    ``batch``: samples side by side (sample innermost in every unit index), sharing the kernel; 1: online.
    """

    c_out: int
    c_in: int
    k: int
    h: int
    w: int
    h_full: int
    w_full: int
    pad: int
    batch: int = 1

    @classmethod
    def of(cls, layer, batch: int = 1) -> ConvGeometry:
        """Geometry of a :class:`~decolle_brian.network.spec.ConvLayerSpec` of ``batch`` samples side by side."""
        c_out, c_in, k, _ = layer.kernel_shape
        _, h, w = layer.in_shape
        _, h_full, w_full = layer.full_shape
        return cls(c_out, c_in, k, h, w, h_full, w_full, layer.padding, batch)


#: the index loads of Brian's generic synapse code that the conv loops compute instead (name -> array key)
INDEX_LOADS = {"_presynaptic_idx": "_synaptic_pre", "_postsynaptic_idx": "_synaptic_post", "in_idx": "in_idx",
               "k_idx": "k_idx"}


def conv_code_lines(code_lines, arrays: dict, copies: dict | None = None) -> list[str]:
    """Brian's vector code of a conv summed variable without its per-synapse index loads.

    ``arrays`` maps the keys of :data:`INDEX_LOADS` to the C++ array names. A line that still reads a
    per-synapse value (``[_idx]``) means the model grew a synaptic variable the loops cannot compute: that
    is refused (at code generation, before anything is compiled), not silently miscomputed.

    ``copies`` (array name -> name of its copy) is for a loop whose ``in_idx`` indexes a rearranged copy of
    the inputs (the gradient loop's channel-last copy): every read at ``in_idx`` then reads the copy, and a
    read at ``in_idx`` of an array without a copy is refused.
    """
    loads = {f"const int32_t {name} = {arrays[key]}[_idx];" for name, key in INDEX_LOADS.items() if key in arrays}
    lines = [line for line in code_lines if line.strip() not in loads]
    stray = [line.strip() for line in lines if "[_idx]" in line]
    if stray:
        raise NotImplementedError(f"The conv loops compute only the indices {sorted(INDEX_LOADS)}; this code reads "
                                  f"other per-synapse values: {stray}")
    if copies is not None:
        for array, copy in copies.items():
            lines = [line.replace(f"{array}[in_idx]", f"{copy}[in_idx]") for line in lines]
        stray = [line.strip() for line in lines
                 if "[in_idx]" in line and not any(f"{copy}[in_idx]" in line for copy in copies.values())]
        if stray:
            raise NotImplementedError(f"This conv loop reads its inputs at in_idx from copies of {sorted(copies)} "
                                      f"only; this code reads another array there: {stray}")
    return lines


def conv_channel_last(code_lines, arrays: dict) -> tuple[list[str], dict, dict]:
    """Brian's vector code of a conv event pathway reading channel-last copies (``conv_event_scatter``).

    The lines of :func:`conv_code_lines`, with every array read or written at ``k_idx`` (the kernel's
    variables) pointed to a copy ``_k_t<i>`` laid out [c][a][e][o] and every array at ``_postsynaptic_idx`` (the
    full units' variables) to a copy ``_post_t<i>`` laid out [y][x][o]: the scatter's innermost loop then runs
    over the output channels o. A statement that writes a kernel variable is refused (its copy is read-only).

    Returns
    -------
    lines : list of str
    kernel : dict
        Kernel array name -> name of its copy.
    units : dict
        Full-unit array name -> name of its copy (copied back after the events).
    """
    lines = conv_code_lines(code_lines, arrays)
    copies = []
    for index, prefix in (("k_idx", "_k_t"), ("_postsynaptic_idx", "_post_t")):
        names = sorted(set(re.findall(rf"(\w+)\[{index}\]", "\n".join(lines))))
        found = {name: f"{prefix}{i}" for i, name in enumerate(names)}
        for name, copy in found.items():
            pattern = re.compile(rf"\b{name}\[{index}\]")
            if index == "k_idx" and any(re.search(rf"\b{name}\[{index}\]\s*[-+*/]?=(?!=)", line) for line in lines):
                raise NotImplementedError(f"The conv event scatter reads the kernel from a copy; this code writes "
                                          f"{name}[{index}]: {[line.strip() for line in lines]}")
            lines = [pattern.sub(f"{copy}[{index}]", line) for line in lines]
        copies.append(found)
    return lines, copies[0], copies[1]


def array_c_types(variables: dict, get_array_name) -> dict[str, str]:
    """C type of every array variable of a code object, by its array name (``c_data_type`` of its dtype).

    For the copies that a template makes of arrays it knows only by name (:func:`conv_channel_last`'s): each
    copy takes its array's own type (``float`` in a float32 build, ``double`` otherwise).
    """
    return {get_array_name(var): c_data_type(var.dtype) for var in variables.values() if isinstance(var, ArrayVariable)}


class ConvLoopCodeObject(CPPStandaloneCodeObject):
    """C++ standalone code object that also finds this package's templates."""

    templater = package_templater(conv_code_lines=conv_code_lines, conv_channel_last=conv_channel_last,
                                  array_c_types=array_c_types)


#: output channels whose forward sums ``conv_forward_sum`` builds up together (a block's inputs are read once):
#: 4 measured fastest for the batched dense layer 2048 -> 500 x 72 (1.70 ms per sum; 5: 1.90, 1: 5.69)
FORWARD_BLOCK = 4
#: a block's sums up to this many doubles are a local array the compiler keeps in (AVX-512's 32) registers
REGISTER_TILE = 320
#: input channels per register tile of the 1 x 1 kernel gradient (a block of 4 x 32 sums: 16 AVX-512 registers;
#: measured 1.3x over one channel at a time, the same sums; wider tiles spill)
GEMM_TILE = 32
#: bytes of a value -> input channels per register tile of the 1 x 1 kernel gradient: float32 twice as many, the same
#: 16 AVX-512 registers
GEMM_TILES = {8: GEMM_TILE, 4: 2 * GEMM_TILE}
#: bytes of a value -> values per row of the 1 x 1 forward sum's copy and register tile (the row padded to a multiple
#: with zeros): float32 rows of 72 (the batched dense layer at batch 72) leave GCC a remainder of 8 lanes that it
#: vectorises badly (float32 slower than float64 in a standalone copy of the loop, 2.66 against 2.06 ms per sum);
#: padded to 80: 0.8 ms. float64 keeps its rows as measured (72: whole AVX-512 registers already). A row shorter
#: than 16 (batch < 16) is padded to 16 too: up to 16x the multiply-adds of tiny batches, not measured (tested at 4)
ROW_LANES = {4: 16, 8: 1}
#: output channels of a block of the register-tap forward sum (kernels of k > 1): a unit's sums of the block over
#: a kernel row's taps stay in registers. DvsGesture conv 3 (128 -> 128, 7 x 7, 16 x 16) in a standalone copy of
#: the loops, CPU ms per sum: 8 3.9, 4 8.1-8.2 (GCC vectorises 4 worse), 16 4.9-5.1; tap per row (block 4) 13
TAP_BLOCK = 8
#: input channels per register tile of the k > 1 kernel gradient (sums of one tap over all units with a learning
#: signal): DvsGesture learning, conv 2 / conv 3 gradient ms per step (wall, load 4-5): 64 3.0 / 1.9, 32 4.2 /
#: 2.3; a unit's [a][e][c] row added into memory per unit before: 5.2 / 3.5
GRAD_TILE = 64
#: input channels per tile of the kernel gradient over a zero-padded input (``zero_input`` proven; every kernel
#: but 1 x 1 without padding): the
#: k taps of a kernel row x this many channels in registers (7 x 8: 7 AVX-512 registers), the tile's padded
#: input (22 x 22 x 8 doubles, 31 KB for DvsGesture's conv 2 and 3) in the L1 cache over all units
GRAD_LANES = 8
#: output channels per pass of the event scatter over the step's events (then one narrower pass for the rest of
#: c_out): a block's kernel slice and the unit rows of neighbouring events stay in the L1 cache (16: 2.5-4x slower)
SCATTER_BLOCK = 32
#: doubles of padding after each row (one (c, a, e), all output channels) of the event scatter's kernel copy:
#: rows of 128 doubles would sit at the units' rows' addresses modulo 4 KB (loads then wait on unrelated stores);
#: with the blocks above, DvsGesture's conv 2 / conv 3 scatter 0.85 / 0.62 -> 0.52 / 0.44 CPU ms in a
#: standalone copy of the loops (padding 8-32 alike; blocks of 32 without padding, or padding alone: no gain)
KERNEL_ROW_PAD = 8


def channel_block(c_out: int, largest: int = FORWARD_BLOCK) -> int:
    """The largest block of output channels up to ``largest`` that divides ``c_out`` (no remainder loop)."""
    return next(block for block in range(largest, 0, -1) if c_out % block == 0)


def check_forward_padding(name: str, summand: str, inputs: list[str]) -> None:
    """Refuse a forward sum whose summand is not proven 0 at input 0 (sympy, :mod:`decolle_brian.network.proofs`).

    ``conv_forward_sum`` reads the inputs from a zero-padded copy and adds the taps on the padding (or skips the
    rows that read only padding): exact only if those taps add 0, as ``w_pre*p_in`` does at ``p_in = 0``.
    """
    if not vanishes_at_zero(summand, *inputs):
        raise NotImplementedError(f"The conv forward sum {name} = {summand} is not proven 0 where its inputs "
                                  f"{inputs} are 0; conv_forward_sum adds the zero padding's taps (and skips the "
                                  f"rows reading only padding), exact only for such a summand. Keep the forward "
                                  f"summand a product with the input (w_pre * p_in), or run this model on the "
                                  f"runtime device (a synapse list of the taps inside the input)")


def conv_loops(synapses, geometry: ConvGeometry, gradient: str, skip_zero: str | None, gate: str | None,
               zero_input: str | None = None) -> None:
    """Run the summed variables of empty conv ``synapses`` as loops over the convolution.

    Parameters
    ----------
    synapses : Synapses
        Kernel group -> full-resolution group, ``in_idx`` the input index, never connected.
    geometry : ConvGeometry
    gradient : str
        Name of the summed variable onto the kernel (``gw_pre``); the other one (onto the full units) is the
        forward sum.
    skip_zero : str or None
        Postsynaptic variable (``delta_post``) whose value 0 makes the gradient summand 0 (None: no skip).
    gate : str or None
        Presynaptic shared variable (``lr_pre``) whose value 0 makes the optimiser step ignore the gradient
        (None: no gate).
    zero_input : str or None
        Input variable (``p_in``) whose value 0 makes the gradient summand 0: the gradient (every kernel but
        1 x 1 without padding) then sums over a zero-padded copy of the input, every tap of every unit
        (``GRAD_LANES``); None: taps bounded.
    """
    # the variables read at the input index (``p_in``): the gradient loop reads them from channel-last copies
    inputs = sorted(name for name, index in synapses.variables.indices.items() if index == "in_idx")
    suffix = "_batch" if geometry.batch > 1 else ""  # batch 1: the unbatched templates, code unchanged
    if inputs != [zero_input]:  # the padding holds 0 for every input read: the proof must cover them all
        zero_input = None
    for name, updater in synapses.summed_updaters.items():
        onto_kernel = name == gradient
        if not onto_kernel:
            check_forward_padding(name, updater.expression.code, inputs)
        updater.template = ("conv_gradient_sum" if onto_kernel else "conv_forward_sum") + suffix
        updater.codeobj_class = ConvLoopCodeObject
        size = np.dtype(updater.target_var.dtype).itemsize  # 8: float64, 4: float32 (network.precision)
        updater.template_kwds = {**updater.template_kwds, "conv": asdict(geometry),
                                 "skip_zero": skip_zero if onto_kernel else None,
                                 "gate": gate if onto_kernel else None, "conv_inputs": inputs,
                                 "conv_block": channel_block(geometry.c_out), "register_tile": REGISTER_TILE,
                                 "gemm_tile": GEMM_TILES[size], "tap_block": channel_block(geometry.c_out, TAP_BLOCK),
                                 "grad_tile": GRAD_TILE, "grad_lanes": GRAD_LANES,
                                 "row_lanes": ROW_LANES[size],
                                 "zero_input": zero_input if onto_kernel else None}
        extra = [name for name in (skip_zero, gate) if name] if onto_kernel else []
        updater.needed_variables = [*updater.needed_variables, "_synaptic_pre", "_synaptic_post", "in_idx", *extra]


def conv_event_scatter(pathway, geometry: ConvGeometry, kernel_gate: tuple | None = None) -> None:
    """Run the event pathway of empty conv event synapses (mode "event") as loops over the taps of each event.

    Every event of the source (presynaptic unit (c, y_i, x_i), read from its event space: no spike queue, the
    delay is 0) runs Brian's ``on_pre`` statements once per output channel o and tap (a, e) whose unit
    (o, y_i + pad - a, x_i + pad - e) lies in the full-resolution grid, with the kernel element index
    ``k_idx`` = ((o c_in + c) k + a) k + e computed instead of loaded: events x c_out x k^2 per step, in passes
    over the events for blocks of ``SCATTER_BLOCK`` output channels (each unit's terms still in event order).
    ``kernel_gate`` (kernel group, shared variable) or None: the loop reads the kernel from a copy in its own
    layout, refreshed only on the steps after one on which that variable was non-zero (the builder proved that
    the kernel is unchanged by a step on which it is 0); None: refreshed on every step with events.
    """
    pathway.template = "conv_event_scatter"
    pathway.codeobj_class = ConvLoopCodeObject
    gate = None
    if kernel_gate is not None:
        gate = "_kernel_gate"  # the kernel group's shared variable, seen from the event synapses
        pathway.synapses.variables.add_reference(gate, kernel_gate[0], kernel_gate[1])
    pathway.template_kwds = {**(pathway.template_kwds or {}), "conv": asdict(geometry),
                             "conv_block": channel_block(geometry.c_out, TAP_BLOCK), "gate": gate,
                             "scatter_block": SCATTER_BLOCK,
                             "kernel_row_pad": KERNEL_ROW_PAD}
    pathway.needed_variables = [*pathway.needed_variables, pathway.eventspace_name, "_synaptic_pre",
                                "_synaptic_post", "k_idx", *([gate] if gate else [])]

    def create_code_objects(run_namespace):
        # only the scatter code: it reads the event space itself, Brian's spike queue is never filled
        pathway.code_objects[:] = [weakref.proxy(pathway.create_default_code_object(run_namespace))]

    pathway.create_code_objects = create_code_objects


#: Brian's templates -> their versions that run only while a shared variable is non-zero (``templates/gated_*``)
GATED_TEMPLATES = {"stateupdate": "gated_stateupdate", "summed_variable": "gated_summed_variable"}


def gated(runner, gate: str) -> None:
    """Run the code of ``runner`` (a run_regularly or a summed variable) only while shared ``gate`` is non-zero.

    For code that provably changes nothing the network reads when ``gate`` is 0 (the builder's proof,
    :func:`decolle_brian.network.conv.gradient_gates`): the optimiser step of the shared conv parameters and
    the bias gradient, which only that step reads, in burn-in and evaluation (``lr = 0``). A summed variable's
    target is then 0 instead of the unused sum (as the kernel gradient of ``conv_gradient_sum``).
    """
    if runner.template not in GATED_TEMPLATES:
        raise NotImplementedError(f"{runner.name}: no gated version of Brian's template {runner.template!r} "
                                  f"(known: {sorted(GATED_TEMPLATES)})")
    runner.template = GATED_TEMPLATES[runner.template]
    runner.codeobj_class = ConvLoopCodeObject
    runner.template_kwds = {**(runner.template_kwds or {}), "gate": gate}
    runner.needed_variables = [*runner.needed_variables, gate]
