"""torch.library.opcheck, torch.compile(fullgraph=True) and torch.export on code that calls the ops."""

import pytest
import torch

import efficienttrain_ext as et
from lowfreq_reference import ref_crop


@pytest.mark.parametrize(
    "op,args",
    [
        (torch.ops.etrain.lowfreq_crop.default, (torch.randn(2, 3, 12, 10, dtype=torch.float64), [6, 5])),
        (torch.ops.etrain.lowfreq_crop.default, (torch.randn(2, 9, 9), [4, 4])),
        (torch.ops.etrain.lowfreq_crop.default, (torch.randn(2, 9, 9, dtype=torch.bfloat16), [4, 7])),
        (torch.ops.etrain.lowfreq_pad.default, (torch.randn(2, 3, 6, 5, dtype=torch.float64), [12, 10])),
        (torch.ops.etrain.lowfreq_pad.default, (torch.randn(4, 4, dtype=torch.float16), [8, 8])),
    ],
)
def test_opcheck(op, args):
    args = (args[0].requires_grad_(args[0].dtype == torch.float64), args[1])
    torch.library.opcheck(op, args)


class Small(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, x):
        return self.conv(et.lowfreq_crop(x, (12, 10))).mean(dim=(-2, -1))


def test_compile_fullgraph_forward_backward():
    torch.manual_seed(0)
    model = Small()
    x = torch.randn(2, 3, 20, 18, requires_grad=True)
    eager = model(x)
    (gx_eager,) = torch.autograd.grad(eager.sum(), x)
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    out = compiled(x)
    (gx,) = torch.autograd.grad(out.sum(), x)
    torch.testing.assert_close(out, eager)
    torch.testing.assert_close(gx, gx_eager)


def test_compile_inductor_matches_reference():
    fn = torch.compile(lambda t: et.lowfreq_crop(t, 8) * 2.0, fullgraph=True)
    x = torch.randn(2, 16, 16, dtype=torch.float64)
    torch.testing.assert_close(fn(x), ref_crop(x, (8, 8)) * 2.0)


def test_export():
    model = Small().eval()
    x = torch.randn(2, 3, 20, 18)
    ep = torch.export.export(model, (x,))
    assert any("etrain.lowfreq_crop" in str(n.target) for n in ep.graph.nodes)
    torch.testing.assert_close(ep.module()(x), model(x))


def test_fake_tensor_shape_and_errors():
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode():
        x = torch.empty(5, 3, 32, 30)
        assert torch.ops.etrain.lowfreq_crop(x, [16, 15]).shape == (5, 3, 16, 15)
        assert torch.ops.etrain.lowfreq_pad(torch.empty(2, 7, 5), [9, 9]).shape == (2, 9, 9)
        with pytest.raises(ValueError, match="must not exceed"):
            torch.ops.etrain.lowfreq_crop(x, [33, 15])
    meta = torch.empty(2, 3, 32, 32, device="meta")
    assert torch.ops.etrain.lowfreq_crop(meta, [8, 8]).device.type == "meta"
