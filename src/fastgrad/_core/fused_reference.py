"""Optimizer updates, one call per parameter group: the readable twin of _fused.pyx.

Each function takes parallel lists (one entry per parameter) of NumPy arrays:
the parameters' values, their gradients and the optimizer's state arrays, and
updates the parameters and the state IN PLACE.  The formulas are
torch.optim's single-tensor ("for-loop") updates, written in the same order
of operations so that both cores and PyTorch agree to rounding:

    SGD      d = g + wd*p;  buf = mu*buf + (1 - dampening)*d  (buf = d at first)
             d = d + mu*buf (nesterov) or buf;  p -= lr*d
    Adam     m += (1 - b1)*(g - m);  v = b2*v + (1 - b2)*g*g
             p -= lr/(1 - b1^t) * m / (sqrt(v)/sqrt(1 - b2^t) + eps)
             (AdamW: p *= 1 - lr*wd first, instead of adding wd*p to g)
    RMSprop  v = alpha*v + (1 - alpha)*g*g;  avg = sqrt(v [- gavg^2]) + eps
             p -= lr * (g/avg)   or, with momentum, buf = mu*buf + g/avg; p -= lr*buf
    Adagrad  s += g*g;  p -= lr/(1 + (t - 1)*lr_decay) * g/(sqrt(s) + eps)

`steps` entries are 0-d float64 arrays (the per-parameter step counts, as
PyTorch keeps them), incremented in place.  Gradients are never written to.

The compiled module has the same functions, in the same order, with the same
arguments; it runs the whole group in one C loop and hands any array it cannot
take raw pointers of (strided, mixed dtypes) back to these functions.
"""
import math

import numpy as np


def sgd_step(params, grads, momentum_buffers, lr, momentum, dampening, weight_decay, nesterov,
             maximize):
    """SGD with optional momentum, dampening, Nesterov and weight decay.

    `momentum_buffers[i]` is None before the first step with momentum; the
    buffer is then created (a copy of the first direction) and stored in the list.
    """
    for i, p in enumerate(params):
        d = -grads[i] if maximize else grads[i]
        if weight_decay != 0:
            d = d + weight_decay * p
        if momentum != 0:
            buf = momentum_buffers[i]
            if buf is None:
                # PyTorch starts the buffer at the first direction, not at zero.
                buf = np.array(d, dtype=p.dtype, copy=True)
                momentum_buffers[i] = buf
            else:
                buf *= momentum
                buf += (1 - dampening) * d
            d = d + momentum * buf if nesterov else buf
        p -= lr * d


def adam_step(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, steps, lr, beta1, beta2, eps,
              weight_decay, amsgrad, maximize, decoupled):
    """Adam (decoupled=False) and AdamW (decoupled=True), with optional AMSGrad."""
    for i, p in enumerate(params):
        g = -grads[i] if maximize else grads[i]
        m, v = exp_avgs[i], exp_avg_sqs[i]
        steps[i] += 1
        t = float(steps[i])
        if weight_decay != 0:
            if decoupled:
                p *= 1 - lr * weight_decay
            else:
                g = g + weight_decay * p
        # torch's exp_avg.lerp_(g, 1 - beta1): m + w*(g - m) for w < 0.5
        m += (1 - beta1) * (g - m)
        v *= beta2
        v += (1 - beta2) * g * g
        step_size = lr / (1 - beta1 ** t)
        bias_correction2_sqrt = math.sqrt(1 - beta2 ** t)
        if amsgrad:
            np.maximum(max_exp_avg_sqs[i], v, out=max_exp_avg_sqs[i])
            v = max_exp_avg_sqs[i]
        denom = np.sqrt(v) / bias_correction2_sqrt + eps
        p -= step_size * (m / denom)


def rmsprop_step(params, grads, square_avgs, grad_avgs, momentum_buffers, steps, lr, alpha, eps,
                 weight_decay, momentum, centered, maximize):
    """RMSprop, optionally centered and with momentum.

    `grad_avgs` is used only when centered, `momentum_buffers` only when
    momentum > 0 (either may then be None).
    """
    for i, p in enumerate(params):
        g = -grads[i] if maximize else grads[i]
        steps[i] += 1
        if weight_decay != 0:
            g = g + weight_decay * p
        v = square_avgs[i]
        v *= alpha
        v += (1 - alpha) * g * g
        if centered:
            gavg = grad_avgs[i]
            gavg += (1 - alpha) * (g - gavg)
            avg = np.sqrt(v - gavg * gavg)
        else:
            avg = np.sqrt(v)
        avg += eps
        if momentum > 0:
            buf = momentum_buffers[i]
            buf *= momentum
            buf += g / avg
            p -= lr * buf
        else:
            p -= lr * (g / avg)


def adagrad_step(params, grads, state_sums, steps, lr, lr_decay, weight_decay, eps, maximize):
    """Adagrad with learning-rate decay lr / (1 + (t - 1)*lr_decay)."""
    for i, p in enumerate(params):
        g = -grads[i] if maximize else grads[i]
        steps[i] += 1
        t = float(steps[i])
        if weight_decay != 0:
            g = g + weight_decay * p
        clr = lr / (1 + (t - 1) * lr_decay)
        s = state_sums[i]
        s += g * g
        std = np.sqrt(s) + eps
        p -= clr * (g / std)
