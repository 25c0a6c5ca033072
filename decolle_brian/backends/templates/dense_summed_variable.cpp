{# Summed variable of all-to-all synapses stored presynaptic-major (see dense_synapses.cpp and
   decolle_brian/backends/dense_rows.py): a sum onto the presynaptic side is one vectorised reduction per
   row, a sum onto the postsynaptic side adds each row to the target vector. With batch = B the rows are
   all-to-all within each sample (n_post / B synapses, postsynaptic index k B + pre mod B). With skip_row
   (a presynaptic variable whose 0 makes the summand 0, proven by the caller) a sum onto the postsynaptic side
   skips the rows of the presynaptic units where it is 0. #}
{% extends 'common_group.cpp' %}

{% block maincode %}
    {% set _float = c_data_type(_target_var.dtype) %}  {# the sums: in the target's own C type #}
    {# USES_VARIABLES { N, N_pre, N_post, _synaptic_pre, _synaptic_post } #}
    {% set _target_var_array = get_array_name(_target_var) %}
    {% set _pre_array = get_array_name(variables['_synaptic_pre']) %}
    {% set _post_array = get_array_name(variables['_synaptic_post']) %}
    {% set _onto_pre = _index_var.name == '_synaptic_pre' %}
    const int _n_pre = {{constant_or_scalar('N_pre', variables['N_pre'])}};
    const int _n_post = {{constant_or_scalar('N_post', variables['N_post'])}};
    {% set _batch = batch | default(1) %}
    {{ dense_rows_check(N, _pre_array, _post_array, owner.name, _batch) }}
    const int _n_row = _n_post / {{_batch}};  // synapses per row: all-to-all within each of {{_batch}} samples
    {% if not _onto_pre %}
    for (int _k = 0; _k < _n_post; _k++)
        {{_target_var_array}}[_k + {{_target_start}}] = 0;
    {% endif %}
    const size_t _vectorisation_idx = -1;
    {{scalar_code|autoindent}}

    for (int _row_pre = 0; _row_pre < _n_pre; _row_pre++)
    {
        {% if skip_row is defined and skip_row and not _onto_pre %}
        // the summand is proven 0 where this presynaptic variable is 0 (dense_rows.dense_sums): nothing to add
        // (only onto the postsynaptic side: a sum onto the presynaptic side writes every row's target)
        if ({{get_array_name(variables[skip_row])}}[_row_pre] == 0)
            continue;
        {% endif %}
        const size_t _first = (size_t)_row_pre * _n_row;
        {% if _onto_pre %}
        {{_float}} _row_sum = 0;
        {% endif %}
        #pragma GCC ivdep
        for (int _k = 0; _k < _n_row; _k++)
        {
            {{ row_code(vector_code, _pre_array, _post_array, _batch)|autoindent }}
            {% if _onto_pre %}
            _row_sum += _synaptic_var;
            {% else %}
            {{_target_var_array}}[_postsynaptic_idx + {{_target_start}}] += _synaptic_var;
            {% endif %}
        }
        {% if _onto_pre %}
        {{_target_var_array}}[_row_pre + {{_target_start}}] = _row_sum;
        {% endif %}
    }
{% endblock %}
