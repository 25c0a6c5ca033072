"""The network: its specification, parameters and inputs, and the Brian2 objects of each layer kind and mode."""
