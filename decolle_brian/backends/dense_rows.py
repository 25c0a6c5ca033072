"""Dense-row code for all-to-all synapses, used by the C++ standalone backend (``templates/dense_*.cpp``).

An event-driven dense layer (:mod:`decolle_brian.network.event`) spends its time in synaptic loops: each
presynaptic event visits the neuron's whole row of all-to-all synapses, and the readouts sum over all of
theirs every step. Brian's generic templates reach every synapse through its pre- and postsynaptic index
arrays (and, for events, through a spike queue that copies every synapse index of every event), which keeps
the compiler from vectorising the statements. All-to-all synapses made here are stored presynaptic-major
(synapse k = pre * N_post + post; checked once per run by the generated code), so a row is contiguous and
the postsynaptic index is the position in the row. The statements run are Brian's own code generated from
the equations and the derived rule, unchanged; only the loops around them differ:

- ``dense_synapses``: an event pathway (zero delay) reads the source's event space and runs one row per
  event; with OpenMP each thread owns the same slice of postsynaptic neurons in every row (no locks);
- ``dense_summed_variable``: a summed variable is one reduction per row (onto the presynaptic side) or adds
  every row to the target vector (onto the postsynaptic side);
- ``all_to_all/synapses_create_generator``: ``connect()`` fills the index arrays in that order in place (Brian's
  generator pushes each index of each synapse back one by one, every run of the binary).

In a batch of B samples side by side (:mod:`decolle_brian.network.batch`: unit j of sample b is j B + b) the
readout synapses are all-to-all within each sample: presynaptic unit p (sample p mod B) reaches the n_post / B
units k B + (p mod B), its row k = 0 .. n_post / B - 1 stored at p n_post / B + k. ``dense_sums(synapses,
batch=B)`` runs those rows the same way (the postsynaptic index is k B + p mod B instead of k).

Only the C++ standalone backend (:mod:`decolle_brian.backends.cpp_standalone`) uses them; the other
backends (runtime, brian2cuda) keep Brian's generic code.
"""

from __future__ import annotations

import weakref

from brian2.devices.cpp_standalone.codeobject import CPPStandaloneCodeObject

from decolle_brian.backends.templating import package_templater


def post_index(row_position: str, row_pre: str, batch: int) -> str:
    """C++ expression of the postsynaptic index of position ``row_position`` in the row of ``row_pre``."""
    return row_position if batch == 1 else f"{row_position} * {batch} + {row_pre} % {batch}"


def row_code(code_lines, pre_array: str, post_array: str, batch: int = 1) -> list[str]:
    """Body of a dense row loop (counter ``_k``, row ``_first``, presynaptic neuron ``_row_pre``): the generated
    vector code (a list of lines) with its two index loads replaced by the row's indices."""
    loads = {f"const int32_t _presynaptic_idx = {pre_array}[_idx];",
             f"const int32_t _postsynaptic_idx = {post_array}[_idx];"}
    return ["const size_t _idx = _first + _k;", "const size_t _vectorisation_idx = _idx;",
            "const int32_t _presynaptic_idx = _row_pre;",
            f"const int32_t _postsynaptic_idx = {post_index('_k', '_row_pre', batch)};",
            *(line for line in code_lines if line not in loads)]


def dense_rows_check(n_synapses: str, pre_array: str, post_array: str, owner: str, batch: int = 1) -> str:
    """C++ that checks the presynaptic-major storage once per run of the binary (and stops if it is not).

    ``batch``: rows of ``_n_post / batch`` synapses within each sample (the module docstring)."""
    row = "_n_post" if batch == 1 else f"(_n_post / {batch})"
    post = post_index(f"_s % {row}", f"{pre_array}[_s]", batch)
    return f"""static bool _dense_rows_checked = false;
    if (!_dense_rows_checked)
    {{
        bool _dense = (size_t){n_synapses} == (size_t)_n_pre * {row};
        for (size_t _s = 0; _dense && _s < (size_t){n_synapses}; _s++)
            _dense = {pre_array}[_s] == (int32_t)(_s / {row}) && {post_array}[_s] == (int32_t)({post});
        if (!_dense)
        {{
            std::cerr << "{owner}: synapses are not all-to-all in presynaptic-major order" << std::endl;
            exit(1);
        }}
        _dense_rows_checked = true;
    }}"""


class DenseRowCodeObject(CPPStandaloneCodeObject):
    """C++ standalone code object that also finds this package's templates."""

    templater = package_templater(row_code=row_code, dense_rows_check=dense_rows_check)


class AllToAllCreateCodeObject(CPPStandaloneCodeObject):
    """C++ standalone code object whose ``synapses_create_generator`` template fills an all-to-all connect's arrays."""

    templater = CPPStandaloneCodeObject.templater.derive("decolle_brian.backends", templates_dir="templates/all_to_all")


def all_to_all_connect(synapses) -> None:
    """``synapses.connect()`` (all-to-all, presynaptic-major as Brian's generator) by filling the arrays in place.

    Only the creation's code object uses the template: the Synapses' own code object class is restored after."""
    previous = synapses.codeobj_class
    synapses.codeobj_class = AllToAllCreateCodeObject
    try:
        synapses.connect()
    finally:
        synapses.codeobj_class = previous


def dense_pathway(pathway) -> None:
    """Run an event pathway of all-to-all synapses (zero delay, presynaptic-major) as dense rows."""
    pathway.template = "dense_synapses"
    pathway.codeobj_class = DenseRowCodeObject
    pathway.needed_variables = [*pathway.needed_variables, pathway.eventspace_name]

    def create_code_objects(run_namespace):
        # only the row code: it reads the event space itself, Brian's spike queue is never filled
        pathway.code_objects[:] = [weakref.proxy(pathway.create_default_code_object(run_namespace))]

    pathway.create_code_objects = create_code_objects


def dense_sums(synapses, batch: int = 1, skip_rows: dict | None = None) -> None:
    """Compute every summed variable of all-to-all ``synapses`` (presynaptic-major) by dense rows.

    ``batch``: all-to-all within each of ``batch`` samples side by side (the module docstring).
    ``skip_rows``: summed variable onto the postsynaptic side -> presynaptic variable (``s_pre``) whose value
    0 makes its summand 0 (the caller's proof): the rows of presynaptic units where it is 0 add nothing and
    are skipped (a readout of spikes adds the rows of the step's spikes only); every target receives the
    same non-zero terms in the same order."""
    skip_rows = skip_rows or {}
    for name, updater in synapses.summed_updaters.items():
        skip = skip_rows.get(name) if updater.template_kwds["_index_var"].name != "_synaptic_pre" else None
        updater.template = "dense_summed_variable"
        updater.codeobj_class = DenseRowCodeObject
        updater.template_kwds = {**(updater.template_kwds or {}), "batch": batch, "skip_row": skip}
        if skip:
            updater.needed_variables = [*updater.needed_variables, skip]
