"""Constants and schedule shared by every part of a DECOLLE network (builder, layer kinds, modes).

Schedule of one 1 ms step (all objects on ``defaultclock``, as brian2cuda needs)::

    start          new sample? -> all state to 0; per-step inputs: lr, targets, dropout masks
    groups         ODEs (exponential Euler = exact discrete update); refractory jump; forward sum U
    after_groups   input events: q += (1 - decay_syn) * counts
    thresholds     S = U > 0
    resets         s = 1, q += 1 - decay_syn
    after_resets   readout sum y, class sums, err, back-projection, learning signal and bias step,
                   weight step (first acts on U of the next step), monitors (see ORDER)

Layer kinds and modes add their own objects at the orders they document, relative to :data:`ORDER`.
"""

from __future__ import annotations

import numpy as np
from brian2 import ms

#: one simulation step
DT = 1 * ms
#: integration method of every group: exponential Euler is the exact discrete update of the linear ODEs
METHOD = "exponential_euler"
#: order of the objects in the 'after_resets' slot
ORDER = {"readout": 0, "reductions": 1, "probes": 19, "err": 20, "backprojection": 21, "learn": 22, "weights": 23,
         "learning_probes": 24, "monitors": 30}
#: layer variables written by the learning step: probed after it, the others (u, s, ...) before it
LEARNING_VARIABLES = ("bp", "delta", "fac", "v_b")
#: the forward sum U of a layer: in 'groups' after the ODEs (order 0) and the refractory jump (order 1)
FORWARD_SUM_ORDER = 2


def reschedule(obj, when: str, order: int) -> None:
    """Move a Brian object (e.g. a summed-variable updater or a synaptic pathway) to slot ``when``, ``order``."""
    obj.when = when
    obj.order = order


def tau(decay: float):
    """Time constant (Brian quantity) of a per-step decay factor: exp(-dt/tau) = decay."""
    return -DT / np.log(decay)
