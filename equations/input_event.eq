# Input neuron as an event source (NetworkSpec.mode = "event"): instead of being read by every synapse at every
# step, an input emits an event in the steps where it has events; the count travels with it to the synapses.
[equations]
n_events : 1                      # event count of this input in the current step (from the per-step input counts)

[threshold]
n_events > 0                      # one event, of count n_events (may be > 1), in every step with events
