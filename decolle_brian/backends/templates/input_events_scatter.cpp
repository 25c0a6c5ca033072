{# The input group's per-step statements (run_regularly code) after the step's input events are scattered into its
   count variable: the run's event list (decolle_brian/backends/input_events.py gives the file format) is read
   and checked once, before the first step; at step t the neurons listed for step t-1 get count 0 again, each
   entry of step t adds 1, then Brian's statements run for every neuron as in its stateupdate template. The
   counts are small integers, so they are the same doubles as the dense packed input's. #}
{# USES_VARIABLES { N, t_in_timesteps } #}
{# ALLOWS_SCALAR_WRITE #}
{% extends 'common_group.cpp' %}

{% block maincode %}
    {% set _count = get_array_name(variables[count_var]) %}
    const int _N = {{constant_or_scalar('N', variables['N'])}};
    const int64_t _steps = {{steps}};
    // the run's events, read once per run of the binary (one run per process)
    static std::vector<int64_t> _event_offsets;
    static std::vector<int32_t> _event_neurons;
    static int64_t _previous_step = -1;
    if (_event_offsets.empty())
    {
        const std::string _path = brian::results_dir + "{{events_file}}";
        std::ifstream _file(_path.c_str(), std::ios::in | std::ios::binary | std::ios::ate);
        const char* _problem = 0;
        int64_t _header[3] = {0, 0, 0};
        char _magic[8] = {0};
        if (!_file.is_open())
            _problem = "cannot be opened";
        else
        {
            const std::streamoff _size = _file.tellg();
            _file.seekg(0, std::ios::beg);
            _file.read(_magic, 8);
            _file.read(reinterpret_cast<char*>(_header), sizeof(_header));
            if (!_file || std::string(_magic, 8) != "{{magic}}")
                _problem = "is not an event list (no {{magic}} header)";
            else if (_header[0] != _steps || _header[1] != _N)
                _problem = "is for another network (steps or input neurons differ)";
            // the entries from the file's size, not the size from the header's entries: no product of a
            // header value can overflow
            else if (_size < (std::streamoff)({{header_bytes}} + 8 * (_steps + 1))
                     || (_size - {{header_bytes}} - 8 * (_steps + 1)) % 4 != 0
                     || _header[2] != (_size - {{header_bytes}} - 8 * (_steps + 1)) / 4)
                _problem = "has a size that does not match its header (truncated?)";
            else
            {
                _event_offsets.resize(_steps + 1);
                _event_neurons.resize(_header[2]);
                _file.read(reinterpret_cast<char*>(&_event_offsets[0]), 8 * (_steps + 1));
                if (_header[2] > 0)
                    _file.read(reinterpret_cast<char*>(&_event_neurons[0]), 4 * _header[2]);
                if (!_file)
                    _problem = "could not be read whole";
                else if (_event_offsets[0] != 0 || _event_offsets[_steps] != _header[2])
                    _problem = "has offsets that do not span its entries";
                for (int64_t _t = 0; !_problem && _t < _steps; _t++)
                    if (_event_offsets[_t + 1] < _event_offsets[_t])
                        _problem = "has decreasing offsets";
                for (int64_t _e = 0; !_problem && _e < _header[2]; _e++)
                    if (_event_neurons[_e] < 0 || _event_neurons[_e] >= _N)
                        _problem = "lists a neuron index outside the input group";
            }
        }
        if (_problem)
        {
            // stdout goes to the run's stdout.txt, which the Python side reports
            std::cout << "Input events file '" << _path << "' " << _problem << std::endl;
            exit(1);
        }
    }
    const int64_t _step = {{t_in_timesteps}};
    if (_previous_step >= 0 && _previous_step < _steps)
        for (int64_t _e = _event_offsets[_previous_step]; _e < _event_offsets[_previous_step + 1]; _e++)
            {{_count}}[_event_neurons[_e]] = 0;
    if (_step >= 0 && _step < _steps)
        for (int64_t _e = _event_offsets[_step]; _e < _event_offsets[_step + 1]; _e++)
            {{_count}}[_event_neurons[_e]] += 1;
    _previous_step = _step;

    const size_t _vectorisation_idx = -1;
    {{scalar_code|autoindent}}
    {{openmp_pragma('parallel-static')}}
    for(int _idx=0; _idx<_N; _idx++)
    {
        const size_t _vectorisation_idx = _idx;
        {{vector_code|autoindent}}
    }
{% endblock %}

{% block extra_headers %}
#include <string>
#include <vector>
{% endblock %}
