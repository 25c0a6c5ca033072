{# Summed variable of all-to-all synapses stored presynaptic-major (see dense_synapses.cpp and
   decolle_brian/backends/dense_rows.py): a sum onto the presynaptic side is one vectorised reduction per
   row, a sum onto the postsynaptic side adds each row to the target vector. #}
{% extends 'common_group.cpp' %}

{% block maincode %}
    {# USES_VARIABLES { N, N_pre, N_post, _synaptic_pre, _synaptic_post } #}
    {% set _target_var_array = get_array_name(_target_var) %}
    {% set _pre_array = get_array_name(variables['_synaptic_pre']) %}
    {% set _post_array = get_array_name(variables['_synaptic_post']) %}
    {% set _onto_pre = _index_var.name == '_synaptic_pre' %}
    const int _n_pre = {{constant_or_scalar('N_pre', variables['N_pre'])}};
    const int _n_post = {{constant_or_scalar('N_post', variables['N_post'])}};
    {{ dense_rows_check(N, _pre_array, _post_array, owner.name) }}
    {% if not _onto_pre %}
    for (int _k = 0; _k < _n_post; _k++)
        {{_target_var_array}}[_k + {{_target_start}}] = 0;
    {% endif %}
    const size_t _vectorisation_idx = -1;
    {{scalar_code|autoindent}}

    for (int _row_pre = 0; _row_pre < _n_pre; _row_pre++)
    {
        const size_t _first = (size_t)_row_pre * _n_post;
        {% if _onto_pre %}
        double _row_sum = 0;
        {% endif %}
        #pragma GCC ivdep
        for (int _k = 0; _k < _n_post; _k++)
        {
            {{ row_code(vector_code, _pre_array, _post_array)|autoindent }}
            {% if _onto_pre %}
            _row_sum += _synaptic_var;
            {% else %}
            {{_target_var_array}}[_k + {{_target_start}}] += _synaptic_var;
            {% endif %}
        }
        {% if _onto_pre %}
        {{_target_var_array}}[_row_pre + {{_target_start}}] = _row_sum;
        {% endif %}
    }
{% endblock %}
