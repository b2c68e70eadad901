"""The paper's baselines (docs/method.md#baselines): registry, life cycle, OrthP, orthogonality losses, GReg-1, Scratch."""

from __future__ import annotations

import copy
import math
import warnings

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import tpp.pruning as pruning
from tpp.errors import ConfigError
from tpp.models import create_model, example_inputs
from tpp.pruning.methods.greg import GReg1Pruner
from tpp.pruning.methods.l1 import L1Pruner
from tpp.pruning.methods.l1_variants import (
    kernorth_finetune_penalty,
    orthconv_finetune_penalty,
    orthp_reinit,
    reinitialize_,
)
from tpp.pruning.methods.orth_then_l1 import DEFAULT_ORTH_ITERS, OrthRegThenL1Pruner
from tpp.pruning.orthogonality import (
    conv_orthogonality,
    deconv_orth_dist,
    kernel_orthogonality,
    orth_dist,
    orthconv_geometry,
    orthogonalize_,
)

ALL_METHODS = ["tpp", "l1", "l1+orthp", "l1+kernorth", "l1+orthconv", "kernorth+l1", "orthconv+l1", "greg1", "scratch"]
SHORT = dict(reg_step=0.5, reg_interval=1, reg_ceiling=1.0, stabilize_iters=3, zero_out_interval=1, orth_iters=3)


def _model(name: str, seed: int = 0) -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(seed)
    kwargs = {"in_channels": 1} if name.startswith("mlp") else {}
    model = create_model(name, **kwargs)
    return model, example_inputs(model, batch_size=4)


def _train_step(model, optimizer, inputs, penalty=None) -> None:
    labels = torch.arange(inputs.shape[0]) % 10
    loss = F.cross_entropy(model(inputs), labels)
    if penalty is not None:
        loss = loss + penalty()
    optimizer.zero_grad()
    loss.backward()


def test_every_method_is_registered():
    assert set(ALL_METHODS) <= set(pruning.list_methods())


@pytest.mark.parametrize("model_name", ["mlp7_linear", "resnet20"])
@pytest.mark.parametrize("name", ALL_METHODS)
def test_full_life_cycle(name, model_name):
    model, inputs = _model(model_name)
    params_before = sum(p.numel() for p in model.parameters())
    method = pruning.get_method(name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # short schedules warn about the zero-out spacing
        options = {k: v for k, v in SHORT.items() if k in {o.name for o in method.options}}  # the method's own
        pruner = method.make_pruner(model, inputs, ratio=0.5, scope="internal", global_ratio=None, **options)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    steps = 0
    while method.regularized and not pruner.done:
        _train_step(model, optimizer, inputs, pruner.penalty)
        pruner.regularize()
        optimizer.step()
        pruner.step()
        steps += 1
        assert steps < 50
    assert pruner.done and pruner.pruned_indices
    model = pruner.prune(optimizer)
    if method.after_prune is not None:
        method.after_prune(model)
    finetune = torch.optim.SGD(model.parameters(), lr=1e-3)
    penalty = method.finetune_penalty(model) if method.finetune_penalty is not None else None
    _train_step(model, finetune, inputs, penalty)
    finetune.step()
    assert model(inputs).shape == (4, 10)
    assert torch.isfinite(model(inputs)).all()
    assert sum(p.numel() for p in model.parameters()) < params_before


def _l1_pruned(name: str) -> nn.Module:
    model, inputs = _model(name)
    return L1Pruner(model, inputs, ratio=0.5).prune()


def test_orthp_gives_exact_isometry_on_linear_mlp():
    model = _l1_pruned("mlp7_linear")
    biases = [m.bias.detach().clone() for m in model.modules() if isinstance(m, nn.Linear)]
    orthp_reinit(model)
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert len(linears) == 7 and linears[1].weight.shape == (50, 50)
    product = torch.eye(linears[0].in_features, dtype=torch.float64)
    for layer in linears:
        product = layer.weight.double() @ product
    singular = torch.linalg.svdvals(product)
    assert singular.shape == (10,)
    assert torch.allclose(singular, torch.ones_like(singular), atol=1e-4)
    assert all(torch.equal(b, m.bias) for b, m in zip(biases, linears))  # biases untouched


def test_orthp_makes_every_conv_orthogonal_times_relu_gain():
    model = _l1_pruned("resnet20")
    bn_before = model.bn1.weight.detach().clone()
    orthp_reinit(model)
    gain2 = 2.0  # sqrt(2)^2 for ReLU nets
    for layer in model.modules():
        if isinstance(layer, (nn.Conv2d, nn.Linear)):
            w = layer.weight.detach().flatten(1).double()
            gram = w @ w.t() if w.shape[0] <= w.shape[1] else w.t() @ w
            assert torch.allclose(gram, gain2 * torch.eye(gram.shape[0], dtype=gram.dtype), atol=1e-5)
    assert torch.equal(model.bn1.weight, bn_before)


def test_kernorth_zero_for_orthogonal_positive_otherwise_with_gradient():
    torch.manual_seed(0)
    for shape in [(8, 20), (20, 8), (6, 3, 3, 3)]:
        w = torch.randn(shape)
        layer = nn.Conv2d(3, 6, 3) if len(shape) == 4 else nn.Linear(shape[1], shape[0])
        layer.weight.data.copy_(w)
        orthogonalize_([layer], 1.0)
        assert orth_dist(layer.weight.detach()).item() < 1e-5
        assert orth_dist(w).item() > 0.1
    w = torch.randn(8, 20, requires_grad=True)
    orth_dist(w).backward()
    assert w.grad.abs().sum() > 0


def test_kernorth_covers_first_layer_orthconv_skips_it():
    model, _ = _model("mlp7_linear")
    orthogonalize_(model, 1.0)
    assert kernel_orthogonality(model).item() < 1e-4 and conv_orthogonality(model).item() < 1e-4
    with torch.no_grad():
        model.fc1.weight.mul_(3.0)
    assert kernel_orthogonality(model).item() > 1.0
    assert conv_orthogonality(model).item() < 1e-4
    penalty = kernorth_finetune_penalty(model)
    assert torch.allclose(penalty(), 0.1 * kernel_orthogonality(model))
    assert torch.allclose(orthconv_finetune_penalty(model)(), 0.1 * conv_orthogonality(model))


def _delta_kernel(channels: int, k: int) -> torch.Tensor:
    kernel = torch.zeros(channels, channels, k, k)
    kernel[:, :, k // 2, k // 2] = torch.eye(channels)
    return kernel


def test_orthconv_zero_for_centred_identity_kernel():
    for stride in (1, 2):
        conv = nn.Conv2d(4, 4, 3, stride=stride, padding=1, bias=False)
        conv.weight.data.copy_(_delta_kernel(4, 3))
        s, p = orthconv_geometry(conv)
        assert deconv_orth_dist(conv.weight, s, p).item() < 1e-6
    # the official stride-2/padding-1 geometry never evaluates shift 0 (docs/method.md#official-code): it is not 0 here
    s, p = orthconv_geometry(conv, official_stride2=True)
    assert deconv_orth_dist(conv.weight, s, p).item() == pytest.approx(2.0)  # ||I_4||_F at a wrong shift
    depthwise = torch.zeros(4, 1, 3, 3)
    depthwise[:, :, 1, 1] = 1.0  # per-group identity: orthogonal, though filters share no input channel
    assert deconv_orth_dist(depthwise, 1, 2, groups=4).item() < 1e-6
    assert deconv_orth_dist(depthwise, 1, 2).item() > 1.0  # without groups the cross-group pairs count
    kernel = torch.randn(4, 4, 3, 3, requires_grad=True)
    loss = deconv_orth_dist(kernel, 1, 2)
    loss.backward()
    assert loss.item() > 0 and kernel.grad.abs().sum() > 0


@pytest.mark.parametrize("k,stride", [(3, 1), (3, 2), (4, 2), (5, 2), (1, 2)])
def test_orthconv_geometry_matches_the_conv_operator_gram(k, stride):
    """The self-convolution entries are exactly the inner products between one output row of the conv
    operator and all rows that overlap it (interior position, no border effects)."""
    torch.manual_seed(0)
    channels_in, channels_out, n = 2, 3, 16
    conv = nn.Conv2d(channels_in, channels_out, k, stride=stride, bias=False)
    basis = torch.eye(channels_in * n * n).reshape(-1, channels_in, n, n)
    with torch.no_grad():
        rows = conv(basis)  # [inputs, o, ho, wo]: the operator transposed
    ho = rows.shape[-1]
    operator = rows.reshape(rows.shape[0], -1).t().reshape(channels_out, ho, ho, -1)
    s, p = orthconv_geometry(conv)
    reach = p[0] // stride
    centre = ho // 2
    own = operator[:, centre, centre]  # [o, inputs]
    grams = [
        own @ operator[:, centre + dy, centre + dx].t()
        for dy in range(-reach, reach + 1)
        for dx in range(-reach, reach + 1)
    ]
    with torch.no_grad():
        self_conv = F.conv2d(conv.weight, conv.weight, stride=s, padding=p)
    expected = torch.sort(torch.stack(grams).flatten()).values
    assert torch.allclose(torch.sort(self_conv.flatten()).values, expected, atol=1e-5)
    # and every overlapping row is covered: one step further there is no overlap
    if centre + reach + 1 < ho:
        assert operator[:, centre, centre].abs().mm(operator[:, centre + reach + 1, centre].abs().t()).max() == 0


def test_orth_then_l1_selects_on_the_weights_at_prune_time():
    model, inputs = _model("mlp7_linear")
    pruner = OrthRegThenL1Pruner(model, inputs, ratio=0.5, orth="kernorth", orth_iters=2)
    before = pruner.pruned_indices["fc1"]
    assert torch.allclose(pruner.penalty(), 0.1 * kernel_orthogonality(model))
    with torch.no_grad():  # make the initially largest filters the smallest
        order = torch.argsort(model.fc1.weight.abs().mean(1))
        model.fc1.weight[order[50:]] *= 1e-3
    pruner.step()
    pruner.step()
    assert pruner.done and float(pruner.penalty()) == 0.0
    pruner.prune()
    after = pruner.pruned_indices["fc1"]
    assert after == sorted(order[50:].tolist()) and after != before
    assert model.fc1.out_features == 50


def test_orth_then_l1_iteration_defaults_and_state():
    model, inputs = _model("mlp7_linear")
    # its own length, not TPP's stabilize_iters; by default the authors' 50,000 iterations
    with pytest.raises(ConfigError, match="no option 'stabilize_iters'"):
        OrthRegThenL1Pruner(model, inputs, stabilize_iters=7)
    assert OrthRegThenL1Pruner(model, inputs).config["orth_iters"] == DEFAULT_ORTH_ITERS == 50_000
    pruner = OrthRegThenL1Pruner(model, inputs, orth="orthconv", orth_iters=5)
    assert pruner.total_iterations == 5 and not pruner.done
    pruner.step()
    other = OrthRegThenL1Pruner(model, inputs, orth="orthconv", orth_iters=5)
    other.load_state_dict(pruner.state_dict())
    assert other.iteration == 1
    with pytest.raises(ConfigError):
        OrthRegThenL1Pruner(model, inputs, orth="nope")


def test_greg1_regularises_pruned_filters_only():
    for name in ("resnet20", "mlp7_linear"):
        model, inputs = _model(name)
        pruner = GReg1Pruner(model, inputs, ratio=0.5, reg_step=0.5, reg_interval=1, stabilize_iters=5)
        pruner.step()
        pruner.step()
        assert pruner.reg_value == 1.0 and float(pruner.penalty()) == 0.0
        for p in model.parameters():
            p.grad = torch.zeros_like(p)
        pruner.regularize()
        unit = pruner.units[0]
        layer = unit.rows[0].module
        rows = torch.tensor(pruner.pruned_indices[unit.name])
        kept = torch.ones(layer.weight.shape[0], dtype=torch.bool)
        kept[rows] = False
        assert torch.allclose(layer.weight.grad[rows], layer.weight[rows].detach())
        assert float(layer.weight.grad[kept].abs().sum()) == 0.0
        others = [
            p
            for n, p in model.named_parameters()
            if not n.endswith("weight") or isinstance(model.get_submodule(n.rsplit(".", 1)[0]), nn.BatchNorm2d)
        ]
        assert others and all(float(p.grad.abs().sum()) == 0.0 for p in others)  # no BN, no bias term
        weights = layer.weight.detach().clone()
        pruner.step()  # stabilising: GReg-1 never zeroes before removal
        assert pruner.phase == "stabilize" and torch.equal(layer.weight, weights)


def test_scratch_reinitialises_the_pruned_architecture():
    model = _l1_pruned("resnet20")
    for bn in (m for m in model.modules() if isinstance(m, nn.BatchNorm2d)):
        bn.weight.data.uniform_(0.5, 1.5)
        bn.bias.data.uniform_(-0.5, 0.5)
    pretrained = copy.deepcopy(model)
    torch.manual_seed(1)
    reinitialize_(model)
    for (name, new), old in zip(model.named_parameters(), pretrained.parameters()):
        assert new.shape == old.shape and not torch.equal(new, old), name
    for bn in (m for m in model.modules() if isinstance(m, nn.BatchNorm2d)):
        assert torch.equal(bn.weight, torch.ones_like(bn.weight)) and torch.equal(bn.bias, torch.zeros_like(bn.bias))
    again = copy.deepcopy(pretrained)
    torch.manual_seed(1)
    pruning.get_method("scratch").after_prune(again)
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), again.parameters()))
    assert math.isfinite(model(example_inputs("resnet20", batch_size=2)).sum().item())
