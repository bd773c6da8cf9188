"""Tensor.register_post_accumulate_grad_hook and the core's end-of-sweep callbacks
(fastgrad/_core/grad_hooks.py), on one process: when hooks run, in which order,
what they see, removal, the all-or-nothing .grad writes when a backward fails
after a hook ran, and that a sweep without hooks never consults the registry."""
import gc
import threading

import numpy as np
import pytest


def _mlp(fg, seed=0):
    fg.manual_seed(seed)
    return fg.nn.Sequential(fg.nn.Linear(3, 4, dtype=np.float64), fg.nn.Tanh(),
                            fg.nn.Linear(4, 2, dtype=np.float64))


def _x(fg, seed=1):
    return fg.tensor(np.random.default_rng(seed).normal(size=(5, 3)))


def _grads(model):
    return [None if p.grad is None else p.grad.numpy().copy() for p in model.parameters()]


def test_hooks_run_once_the_gradient_is_final_before_the_sweep_ends(fg):
    model = _mlp(fg)
    names = {id(p): n for n, p in model.named_parameters()}
    seen = []

    def hook(p):
        # what every parameter's .grad holds when this one's hook runs
        seen.append((names[id(p)], p.grad is not None,
                     [q.grad is not None for q in model.parameters()]))

    handles = [p.register_post_accumulate_grad_hook(hook) for p in model.parameters()]
    (model(_x(fg)) ** 2).sum().backward()
    # the last layer's gradients are final first; when they are, the first
    # layer's .grad is still unwritten (the sweep has not reached it)
    assert [s[0] for s in seen] == ["2.weight", "2.bias", "0.weight", "0.bias"]
    assert all(s[1] for s in seen)
    assert seen[0][2] == [False, False, True, False]
    assert seen[1][2] == [False, False, True, True]
    # and the gradients are those of a model without hooks
    plain = _mlp(fg)
    (plain(_x(fg)) ** 2).sum().backward()
    for p, q in zip(model.parameters(), plain.parameters()):
        np.testing.assert_array_equal(p.grad.numpy(), q.grad.numpy())
    for h in handles:
        h.remove()


def test_hook_sees_the_accumulated_grad_and_can_step(fg):
    torch = pytest.importorskip("torch")
    values = np.array([0.5, -1.0, 2.0])
    v = fg.tensor(values, requires_grad=True)
    tv = torch.tensor(values, requires_grad=True)
    lr = 0.01
    seen = []
    v.register_post_accumulate_grad_hook(lambda p: seen.append(p.grad.numpy().copy()))

    def step(p):                            # SGD inside backward
        p.sub_(p.grad * lr)

    def torch_step(p):
        p.data.sub_(p.grad * lr)

    v.register_post_accumulate_grad_hook(step)
    tv.register_post_accumulate_grad_hook(torch_step)
    for _ in range(2):                      # the second backward accumulates into .grad
        (v * v).sum().backward()
        (tv * tv).sum().backward()
    np.testing.assert_allclose(v.numpy(), tv.detach().numpy(), rtol=0, atol=1e-15)
    np.testing.assert_allclose(v.grad.numpy(), tv.grad.numpy(), rtol=0, atol=1e-15)
    np.testing.assert_allclose(seen[0], 2 * values)
    np.testing.assert_allclose(seen[1], 2 * values + 2 * (values - lr * 2 * values))
    # a hook returning a value is an error, as in PyTorch, and fails the backward
    v.register_post_accumulate_grad_hook(lambda p: p.grad)
    grad = v.grad.numpy().copy()
    with pytest.raises(RuntimeError, match="returned a value; it must return None"):
        (v * v).sum().backward()
    np.testing.assert_array_equal(v.grad.numpy(), grad)


def test_order_removal_and_handles(fg):
    w = fg.tensor([1.0, 2.0], requires_grad=True)
    calls = []
    first = w.register_post_accumulate_grad_hook(lambda p: calls.append("first"))
    second = w.register_post_accumulate_grad_hook(lambda p: calls.append("second"))
    (w * 3).sum().backward()
    assert calls == ["first", "second"]              # registration order
    first.remove()
    first.remove()                                   # twice: harmless
    (w * 3).sum().backward()
    assert calls == ["first", "second", "second"]
    with w.register_post_accumulate_grad_hook(lambda p: calls.append("third")):
        (w * 3).sum().backward()
    (w * 3).sum().backward()
    assert calls[3:] == ["second", "third", "second"]
    assert first.id != second.id
    second.remove()
    np.testing.assert_array_equal(w.grad.numpy(), [12.0, 12.0])   # four backward passes


def test_a_root_leaf_runs_its_hook_and_fg_grad_runs_none(fg):
    w = fg.tensor([1.0, 2.0], requires_grad=True)
    calls = []
    w.register_post_accumulate_grad_hook(lambda p: calls.append(p.grad.numpy().tolist()))
    w.backward(fg.tensor([3.0, 4.0]))                # w is the root: no consumer
    assert calls == [[3.0, 4.0]]
    (g,) = fg.grad((w * w).sum(), w)                 # writes no .grad: no hook
    np.testing.assert_array_equal(g.numpy(), [2.0, 4.0])
    assert calls == [[3.0, 4.0]]
    other = fg.tensor([1.0], requires_grad=True)     # outside this backward's graph
    other.register_post_accumulate_grad_hook(lambda p: calls.append("other"))
    (w * 2).sum().backward()
    assert calls == [[3.0, 4.0], [5.0, 6.0]] and other.grad is None


def test_hooks_run_with_recording_off(fg):
    w = fg.tensor([1.0], requires_grad=True)
    modes = []
    w.register_post_accumulate_grad_hook(lambda p: modes.append(fg.is_grad_enabled()))
    (w * 2).sum().backward()
    assert modes == [False] and fg.is_grad_enabled()
    # and in another thread, whose mode is its own
    other = threading.Thread(target=lambda: (w * 2).sum().backward())
    other.start()
    other.join()
    assert modes == [False, False] and fg.is_grad_enabled()


def test_registration_errors(fg):
    w = fg.tensor([1.0], requires_grad=True)
    with pytest.raises(RuntimeError, match="only a leaf tensor .* computed by 'mul'"):
        (w * 2).register_post_accumulate_grad_hook(lambda p: None)
    with pytest.raises(RuntimeError, match="does not require grad"):
        fg.tensor([1.0]).register_post_accumulate_grad_hook(lambda p: None)
    with pytest.raises(TypeError, match="must be callable"):
        w.register_post_accumulate_grad_hook(3)
    with pytest.raises(RuntimeError, match="no backward is running hooks"):
        fg._core.core.queue_callback(lambda error: None)


def test_an_error_in_a_hook_changes_no_grad(fg):
    """A hook that raises fails the backward; the .grad written early are put back
    (values too, where the sweep had added into the old .grad in place)."""
    model = _mlp(fg)
    (model(_x(fg, 2)) ** 2).sum().backward()        # .grad exist: accumulation is in place
    before = _grads(model)
    objects = [p.grad for p in model.parameters()]
    arrays = [p.grad.numpy() for p in model.parameters()]
    last, first = model[2].weight, model[0].weight

    def boom(p):
        raise ValueError("hook failed on purpose")

    last.register_post_accumulate_grad_hook(lambda p: None)   # runs, and is undone
    handle = first.register_post_accumulate_grad_hook(boom)   # raises near the end
    with pytest.raises(ValueError, match="hook failed on purpose"):
        (model(_x(fg)) ** 2).sum().backward()
    for p, b, obj, arr in zip(model.parameters(), before, objects, arrays):
        assert p.grad is obj
        np.testing.assert_array_equal(p.grad.numpy(), b)
        np.testing.assert_array_equal(arr, b)               # the memory itself restored
    # from None too: a .grad that did not exist does not exist afterwards
    model.zero_grad(set_to_none=True) if _takes_set_to_none(model) else _clear(model)
    with pytest.raises(ValueError, match="hook failed on purpose"):
        (model(_x(fg)) ** 2).sum().backward()
    assert _grads(model) == [None] * 4
    handle.remove()
    (model(_x(fg)) ** 2).sum().backward()                    # and the graph still works
    assert all(g is not None for g in _grads(model))


def _takes_set_to_none(model):
    import inspect
    return "set_to_none" in inspect.signature(model.zero_grad).parameters


def _clear(model):
    for p in model.parameters():
        p.grad = None


def test_a_failing_backward_after_a_hook_ran_changes_no_grad(fg):
    """The error comes from a later node's backward rule, after a hook already ran;
    callbacks queued by the hook hear of the failure."""
    calls = []

    class Fail(fg.Function):
        @staticmethod
        def forward(ctx, x):
            return x * 1.0

        @staticmethod
        def backward(ctx, g):
            raise ArithmeticError("rule failed on purpose")

    w1 = fg.tensor([1.0, 2.0], requires_grad=True)
    w2 = fg.tensor([3.0, 4.0], requires_grad=True)
    w2.grad = fg.tensor([10.0, 20.0])
    core = fg._core.core

    def hook(p):
        calls.append(p.grad.numpy().tolist())
        core.queue_callback(lambda error: calls.append(type(error).__name__))

    w2.register_post_accumulate_grad_hook(hook)
    loss = (Fail.apply(w1 * 2) * w2).sum()            # w2 is final before Fail runs
    with pytest.raises(ArithmeticError, match="rule failed"):
        loss.backward()
    assert calls == [[12.0, 24.0], "ArithmeticError"]
    np.testing.assert_array_equal(w2.grad.numpy(), [10.0, 20.0])
    assert w1.grad is None


def test_callbacks_run_before_the_other_leaves_are_written(fg):
    core = fg._core.core
    a = fg.tensor([1.0], requires_grad=True)
    b = fg.tensor([2.0], requires_grad=True)
    seen = []

    def at_end(error):
        seen.append((error, b.grad))        # b has no hook: written after the callbacks

    a.register_post_accumulate_grad_hook(lambda p: core.queue_callback(at_end))
    (a * 3 + b * 5).sum().backward()
    assert seen == [(None, None)]
    np.testing.assert_array_equal(b.grad.numpy(), [5.0])

    def refuse(error):
        raise RuntimeError("callback refused")

    a.register_post_accumulate_grad_hook(lambda p: core.queue_callback(refuse))
    with pytest.raises(RuntimeError, match="callback refused"):
        (a * 3 + b * 5).sum().backward()
    # all or nothing: neither a (written early) nor b (not yet) changed
    np.testing.assert_array_equal(a.grad.numpy(), [3.0])
    np.testing.assert_array_equal(b.grad.numpy(), [5.0])
    # at_end was called (with None) before refuse raised, and is not called again
    assert len(seen) == 2 and seen[1][0] is None and seen[1][1] is b.grad


def test_no_hook_no_registry_work(fg, monkeypatch):
    """Without hooks the sweep never asks the registry anything (one dict test),
    and the registry forgets a tensor's hooks with the tensor."""
    hooks = fg._core.core.HOOKS

    def never(order):
        raise AssertionError("the sweep consulted the registry without any hook")

    others = dict(hooks.hooks)       # hooks of tensors other tests still hold
    hooks.hooks.clear()
    try:
        model = _mlp(fg)
        h = model[0].weight.register_post_accumulate_grad_hook(lambda p: None)
        h.remove()
        assert hooks.hooks == {}
        monkeypatch.setattr(hooks, "schedule", never)
        (model(_x(fg)) ** 2).sum().backward()
        monkeypatch.undo()
        t = fg.tensor([1.0], requires_grad=True)
        t.register_post_accumulate_grad_hook(lambda p: None)
        assert len(hooks.hooks) == 1
        del t
        gc.collect()
        assert hooks.hooks == {}
    finally:
        hooks.hooks.update(others)


def test_compiled_tape_runs_hooks(fg):
    w = fg.tensor([1.0, 2.0], requires_grad=True)
    calls = []
    w.register_post_accumulate_grad_hook(lambda p: calls.append(p.grad.numpy().tolist()))
    step = fg.compile(lambda: (w * w).sum())
    step()
    step()
    assert calls == [[2.0, 4.0], [4.0, 8.0]]
