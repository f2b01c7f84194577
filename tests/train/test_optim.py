"""heron's eager optimizers: torch's arithmetic exactly, without importing torch.compile's machinery."""

import subprocess
import sys

import pytest
import torch

from heron.train.optim import eager_optimizer


def _train(optimizer_class, steps=15, **kwargs):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(12, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    opt = optimizer_class(model.parameters(), lr=1e-2, **kwargs)
    for _ in range(steps):
        loss = torch.nn.functional.cross_entropy(model(torch.randn(16, 12)), torch.randint(3, (16,)))
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return model, opt


@pytest.mark.parametrize("base, kwargs", [(torch.optim.AdamW, {"weight_decay": 1e-2}),
                                          (torch.optim.SGD, {"momentum": 0.9, "weight_decay": 1e-4})])
def test_same_weights_and_state_as_the_stock_optimizer(base, kwargs):
    ours, ours_opt = _train(eager_optimizer(base), **kwargs)
    stock, stock_opt = _train(base, **kwargs)
    assert isinstance(ours_opt, base)
    for a, b in zip(ours.parameters(), stock.parameters()):
        assert torch.equal(a, b)
    ours_state, stock_state = ours_opt.state_dict()["state"], stock_opt.state_dict()["state"]
    assert ours_state.keys() == stock_state.keys()
    for index in ours_state:  # moments / momentum buffers, step counts
        for name, value in ours_state[index].items():
            assert torch.equal(torch.as_tensor(value), torch.as_tensor(stock_state[index][name])), name
    stock_opt.load_state_dict(ours_opt.state_dict())  # state moves between the two
    assert stock_opt.state_dict()["param_groups"] == ours_opt.state_dict()["param_groups"]


def test_training_imports_no_torch_compile_machinery():
    code = (
        "import sys, torch\n"
        "from heron.train.optim import eager_optimizer\n"
        "m = torch.nn.Linear(4, 2)\n"
        "opt = eager_optimizer(torch.optim.AdamW)(m.parameters(), lr=0.1)\n"
        "m(torch.randn(3, 4)).sum().backward(); opt.step(); opt.zero_grad(); opt.load_state_dict(opt.state_dict())\n"
        "print('torch._dynamo' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
