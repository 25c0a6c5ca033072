"""In-memory samples for tests of the training loop: a list of (counts, label) with a data set's methods."""


class ListSamples:
    """A list of (counts, label) with the data set methods the training loop calls."""

    def __init__(self, counts, labels):
        self.items = [(c, int(label)) for c, label in zip(counts, labels, strict=True)]

    def __len__(self):
        return len(self.items)

    def __getitem__(self, index):
        return self.items[index]

    def set_epoch(self, epoch):
        pass
