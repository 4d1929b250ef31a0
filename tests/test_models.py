"""Generator (Table 1) and discriminator (Table 2) against docs/paper.md's counts and shapes."""

import copy

import pytest
import torch

from gipc.errors import ConfigError
from gipc.models import Discriminator, Generator
from gipc.models.generator import conv_block

from helpers import paper_discriminator, paper_generator, random_eval_generator


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def test_generator_has_table1_parameter_count():
    # docs/paper.md section 2: 156,033 trainable parameters, counted by hand from Table 1.
    assert n_params(paper_generator()) == 156_033


def test_discriminator_at_80x80_has_table2_parameter_count():
    d = paper_discriminator(80)
    assert n_params(d) == 100_801
    assert (d.head.in_features, d.head.out_features) == (3200, 1)


@pytest.mark.parametrize("size", [(1, 1), (7, 13), (37, 53), (80, 80)])
def test_generator_keeps_any_size_and_stays_in_tanh_range(size):
    g = paper_generator().eval()
    a, b = torch.rand(2, 1, *size) * 2 - 1, torch.rand(2, 1, *size) * 2 - 1
    out = g(a, b)
    assert out.shape == (2, 1, *size)
    assert out.abs().max() <= 1


def test_generator_paths_are_not_shared_and_exchange_information():
    g = paper_generator().eval()
    assert g.enc_a[0][0].weight.data_ptr() != g.enc_b[0][0].weight.data_ptr()
    a, b = torch.zeros(1, 1, 9, 9), torch.zeros(1, 1, 9, 9)
    b2 = b.clone()
    b2[..., 4, 4] = 1
    # Changing B changes the output: B reaches the decoder (through its own path and the exchange).
    assert not torch.equal(g(a, b), g(a, b2))
    # The exchange itself: A's second block sees B's first features (and B's sees A's), A's first block does not.
    seen: dict[str, torch.Tensor] = {}
    for name, block in (("a0", g.enc_a[0]), ("a1", g.enc_a[1]), ("b0", g.enc_b[0]), ("b1", g.enc_b[1])):
        block.register_forward_hook(lambda m, args, out, name=name: seen.__setitem__(name, out.clone()))
    g(a, b)
    before = dict(seen)
    g(a, b2)
    assert torch.equal(seen["a0"], before["a0"]) and not torch.equal(seen["a1"], before["a1"])
    g(b2, b)  # now only A changes
    assert torch.equal(seen["b0"], before["b0"]) and not torch.equal(seen["b1"], before["b1"])


@pytest.mark.parametrize("size", [32, 48, 80, 96])
def test_discriminator_scores_one_number_per_image(size):
    d = paper_discriminator(size)
    assert d(torch.rand(3, 1, size, size)).shape == (3, 1)
    assert d.head.in_features == 128 * (size // 16) ** 2


@pytest.mark.parametrize("bad", [0, 40, 81])
def test_discriminator_rejects_patch_sizes_not_divisible_by_16(bad):
    with pytest.raises(ValueError, match="multiple of 16"):
        paper_discriminator(bad)


@pytest.mark.parametrize(("size", "channels", "side"), [(40, (16, 32, 64), 5), (96, (8, 16, 32, 64, 128), 3)])
def test_discriminator_halves_the_patch_once_per_conv(size, channels, side):
    # Table 2's four convs need multiples of 16; three need 8, five need 32.
    d = paper_discriminator(size, channels=channels)
    assert d(torch.rand(2, 1, size, size)).shape == (2, 1)
    assert d.head.in_features == channels[-1] * side * side
    with pytest.raises(ValueError, match=f"multiple of {2 ** len(channels)}"):
        paper_discriminator(size + 2 ** len(channels) // 2, channels=channels)


@pytest.mark.parametrize("make", [paper_generator, lambda: paper_discriminator(32)], ids=["generator", "discriminator"])
def test_in_place_activations_give_the_out_of_place_outputs_and_gradients(make):
    # Both networks run LeakyReLU in place to save a buffer per block; that is only sound if no
    # backward reads an activation's input. The same weights with out-of-place copies must agree exactly.
    torch.manual_seed(0)
    net = make().train()
    reference = copy.deepcopy(net)
    relus = [m for m in net.modules() if isinstance(m, torch.nn.LeakyReLU)]
    assert relus and all(m.inplace for m in relus)
    for m in reference.modules():
        if isinstance(m, torch.nn.LeakyReLU):
            m.inplace = False
    inputs = [torch.randn(4, 1, 32, 32) for _ in range(2 if isinstance(net, Generator) else 1)]
    outputs = [model(*inputs) for model in (net, reference)]
    for out in outputs:
        (out ** 2).sum().backward()
    assert torch.equal(outputs[0], outputs[1])
    for p, q in zip(net.parameters(), reference.parameters()):
        assert torch.equal(p.grad, q.grad)


def test_every_encoder_block_and_the_feature_generator_see_table1s_inputs() -> None:
    # docs/paper.md section 2: block k of A sees cat(a1..a(k-1), b(k-1)), B mirrors it; the 1x1 block sees cat(a1..a4, b1..b4).
    g = paper_generator().eval()
    ins: dict[str, torch.Tensor] = {}
    outs: dict[str, torch.Tensor] = {}
    blocks = [*((f"a{k}", m) for k, m in enumerate(g.enc_a)), *((f"b{k}", m) for k, m in enumerate(g.enc_b)), ("feature", g.feature)]
    for name, block in blocks:
        block.register_forward_pre_hook(lambda m, args, name=name: ins.__setitem__(name, args[0].clone()))
        block.register_forward_hook(lambda m, args, out, name=name: outs.__setitem__(name, out.clone()))
    g(torch.rand(1, 1, 9, 9), torch.rand(1, 1, 9, 9))
    for k in range(1, 4):
        for own, other in (("a", "b"), ("b", "a")):
            expected = torch.cat([*(outs[f"{own}{j}"] for j in range(k)), outs[f"{other}{k - 1}"]], dim=1)
            assert torch.equal(ins[f"{own}{k}"], expected), (own, k)
    assert torch.equal(ins["feature"], torch.cat([outs[f"{p}{k}"] for p in "ab" for k in range(4)], dim=1))


def test_conv_block_is_a_same_padded_conv_then_leaky_relu_of_the_slope() -> None:
    block = conv_block(1, 1, slope=0.2, norm=False)
    with torch.no_grad():
        block[0].weight.zero_()
        block[0].weight[0, 0, 1, 1] = 1.0  # identity conv
        block[0].bias.zero_()
    x = torch.tensor([[[[-1.0, 2.0], [-0.5, 0.0]]]])
    # LeakyReLU(0.2) by hand: negatives times 0.2, the rest kept; SAME padding keeps 2x2.
    torch.testing.assert_close(block(x), torch.tensor([[[[-0.2, 2.0], [-0.1, 0.0]]]]))


def test_the_output_layer_is_the_last_conv_and_each_head_squashes_it() -> None:
    # Table 1's output: conv 3x3 16 -> 1, then tanh (image head) or, not in the paper, sigmoid weights w with F = w A + (1 - w) B.
    a, b = torch.rand(2, 1, 16, 16) * 2 - 1, torch.rand(2, 1, 16, 16) * 2 - 1
    outputs: dict[str, torch.Tensor] = {}
    for head in ("image", "weights"):
        g = random_eval_generator(seed=1, head=head)
        assert g.output_layer() == "decoder.3."
        assert {k: tuple(v.shape) for k, v in g.state_dict().items() if k.startswith(g.output_layer())} == {
            "decoder.3.weight": (1, 16, 3, 3), "decoder.3.bias": (1,)}
        g.decoder[3].weight.data.mul_(20)  # far outside the squashers' linear range, so a clamp would differ
        g.decoder[3].register_forward_hook(lambda m, args, out, head=head: outputs.__setitem__(head, out.clone()))
        with torch.no_grad():
            fused = g(a, b)
        assert outputs[head].abs().max() > 3
        if head == "image":
            torch.testing.assert_close(fused, torch.tanh(outputs[head]))
        else:
            w = torch.sigmoid(outputs[head])
            torch.testing.assert_close(g.weight(a, b), w)
            torch.testing.assert_close(fused, w * a + (1 - w) * b)


def test_a_bad_head_and_weights_from_the_image_head_are_errors() -> None:
    with pytest.raises(ConfigError, match="head must be one of image, weights, got 'mask'"):
        paper_generator(head="mask")
    with pytest.raises(ValueError, match="only a generator with head='weights' outputs weights"):
        paper_generator().weight(torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 4, 4))


def test_discriminator_by_hand_leaky_relu_slope_and_flatten_order() -> None:
    # One stride-2 conv whose only tap is the centre picks x[2i, 2j]; LeakyReLU(0.3); Linear weights 0..63 over the 8x8 map.
    d = Discriminator(16, channels=(1,), slope=0.3).eval()
    with torch.no_grad():
        d.features[0].weight.zero_()
        d.features[0].weight[0, 0, 1, 1] = 1.0
        d.features[0].bias.zero_()
        d.head.weight.copy_(torch.arange(64.0)[None])
        d.head.bias.zero_()
    x = -torch.ones(1, 1, 16, 16)
    x[..., 0, 2] = 1.0  # feature (row 0, col 1): flattened (C, H, W) it is input 1 of the Linear
    # 1 * 1 + (-0.3) * (0 + 2 + 3 + ... + 63) = 1 - 0.3 * 2015
    torch.testing.assert_close(d(x), torch.tensor([[1 - 0.3 * 2015]]))
