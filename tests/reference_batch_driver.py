"""Run one batch through the published reference (decolle 0.2, PyTorch) and write what it did; run by its Python.

    <reference python> tests/reference_batch_driver.py IN.npz OUT.npz

Not a test module: ``tests/test_reference_batch.py`` calls it in a subprocess with the interpreter given by
``DECOLLE_REFERENCE_PYTHON`` (an environment with ``decolle`` and ``torch``; never a dependency of this package).
It builds the reference's own ``LenetDECOLLE`` (dense layers only, float64), sets the given parameters, and
trains as the reference's ``train`` does with ``online_update=True``: at every step the per-layer
``SmoothL1Loss`` (mean over batch and classes) are summed, ``backward``, one optimiser step, ``zero_grad``.
Two things differ on purpose: the batch starts from rest at step 0 and steps ``t < burnin`` run without
learning (the reference's ``init`` skips steps instead), and the readout dropout multiplies by the given masks
(the reference draws its own), so that both sides see the same numbers.

IN.npz: ``W0 b0 G0 g0 W1 b1 G1 g1`` (and so on per layer), ``counts`` (B, T, n_in), ``labels`` (B,),
``masks0 masks1 ...`` (T, B, n_l), ``consts`` [alpha, beta, alpharp, wrp], ``settings`` [burnin, lr, adamax].
OUT.npz: ``spikes<l>``, ``u<l>`` (T, B, n_l), ``W<l> b<l>`` after the batch and, for Adamax, ``uW<l> ub<l>``.
"""

import sys

import numpy as np
import torch
from decolle.base_model import DECOLLELoss, LIFLayer
from decolle.lenet_decolle_model import LenetDECOLLE


class GivenMask(torch.nn.Module):
    """Readout dropout with masks given from outside: multiplies by the current step's multipliers."""

    def __init__(self):
        super().__init__()
        self.mask = None

    def forward(self, x):
        return x * self.mask


def main(path_in: str, path_out: str) -> None:
    torch.set_default_dtype(torch.float64)  # also makes the reference's alpha, beta tensors float64
    torch.set_num_threads(1)
    data = np.load(path_in, allow_pickle=False)
    n_layers = sum(1 for key in data.files if key.startswith("W"))
    counts = torch.tensor(data["counts"])
    labels = data["labels"].astype(int)
    alpha, beta, alpharp, wrp = (float(x) for x in data["consts"])
    burnin, lr, adamax = data["settings"]
    burnin, adamax = int(burnin), bool(adamax)
    sizes = [data[f"W{l}"].shape[0] for l in range(n_layers)]
    n_classes = data["G0"].shape[0]
    n_batch, n_steps, n_in = counts.shape
    net = LenetDECOLLE(input_shape=(1, 1, n_in), Mhid=list(sizes), out_channels=n_classes, num_conv_layers=0,
                       num_mlp_layers=n_layers, alpha=[alpha], beta=[beta], alpharp=[alpharp], wrp=[wrp],
                       dropout=[0.5], lc_ampl=0.5, lif_layer_type=LIFLayer, method="rtrl")
    masks = []
    with torch.no_grad():
        for l in range(n_layers):
            net.LIF_layers[l].base_layer.weight.copy_(torch.tensor(data[f"W{l}"]))
            net.LIF_layers[l].base_layer.bias.copy_(torch.tensor(data[f"b{l}"]))
            net.readout_layers[l].weight.copy_(torch.tensor(data[f"G{l}"]))
            net.readout_layers[l].bias.copy_(torch.tensor(data[f"g{l}"]))
            net.dropout_layers[l] = GivenMask()
            masks.append(torch.tensor(data[f"masks{l}"]))
    params = list(net.get_trainable_parameters())
    opt = (torch.optim.Adamax(params, lr=float(lr), betas=(0.0, 0.95), eps=1e-8) if adamax
           else torch.optim.SGD(params, lr=float(lr)))
    decolle_loss = DECOLLELoss([torch.nn.SmoothL1Loss() for _ in range(n_layers)], net)
    target = torch.zeros(n_batch, n_classes)
    target[torch.arange(n_batch), torch.tensor(labels)] = 1.0
    spikes = [np.zeros((n_steps, n_batch, n)) for n in sizes]
    u_rec = [np.zeros((n_steps, n_batch, n)) for n in sizes]
    for layer in net.LIF_layers:
        layer.state = None  # from rest
    net.train()
    for t in range(n_steps):
        for l in range(n_layers):
            net.dropout_layers[l].mask = masks[l][t]
        learn = t >= burnin
        with torch.set_grad_enabled(learn):
            s, r, u = net.step(counts[:, t])
        for l in range(n_layers):
            spikes[l][t] = s[l].detach().numpy()
            u_rec[l][t] = u[l].detach().numpy()
        if learn:
            loss = sum(decolle_loss(s, r, u, target=target, mask=torch.ones(n_batch, 1), sum_=False))
            loss.backward()
            opt.step()
            opt.zero_grad()
    out = {}
    for l in range(n_layers):
        weight, bias = net.LIF_layers[l].base_layer.weight, net.LIF_layers[l].base_layer.bias
        out.update({f"spikes{l}": spikes[l], f"u{l}": u_rec[l], f"W{l}": weight.detach().numpy(),
                    f"b{l}": bias.detach().numpy()})
        if adamax:
            out[f"uW{l}"] = opt.state[weight]["exp_inf"].numpy()
            out[f"ub{l}"] = opt.state[bias]["exp_inf"].numpy()
    np.savez(path_out, **out)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
