{# Event pathway of all-to-all synapses stored presynaptic-major (synapse k = pre * N_post + post, as
   Synapses.connect() makes them); see decolle_brian/backends/dense_rows.py. Every event of the source is
   one contiguous row: the postsynaptic index is the loop counter and the presynaptic values are loop
   invariants, so the compiler vectorises the row. Events are read from the source's event space (no spike
   queue: delays are 0). With OpenMP each thread owns the same slice of postsynaptic neurons in every row. #}
{% extends 'common_synapses.cpp' %}

{% block maincode %}
    {# USES_VARIABLES { N, N_pre, N_post, _synaptic_pre, _synaptic_post } #}
    {% set _pre_array = get_array_name(variables['_synaptic_pre']) %}
    {% set _post_array = get_array_name(variables['_synaptic_post']) %}
    {% set _eventspace = get_array_name(variables[pathway.eventspace_name]) %}
    const int _n_pre = {{constant_or_scalar('N_pre', variables['N_pre'])}};
    const int _n_post = {{constant_or_scalar('N_post', variables['N_post'])}};
    {{ dense_rows_check(N, _pre_array, _post_array, owner.name) }}
    const int _n_rows = {{_eventspace}}[_n_pre];
    const size_t _vectorisation_idx = -1;
    {{scalar_code|autoindent}}

    {{ openmp_pragma('parallel') }}
    {
    for (int _row = 0; _row < _n_rows; _row++)
    {
        const int32_t _row_pre = {{_eventspace}}[_row];
        const size_t _first = (size_t)_row_pre * _n_post;
        {% if openmp_pragma('with_openmp') %}
        #pragma omp for schedule(static) nowait
        {% else %}
        #pragma GCC ivdep
        {% endif %}
        for (int _k = 0; _k < _n_post; _k++)
        {
            {{ row_code(vector_code, _pre_array, _post_array)|autoindent }}
        }
    }
    }
{% endblock %}
