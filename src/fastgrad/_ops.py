"""Op codes and names shared by both cores.

An op code is a small integer stored in each node; its name is what
`Tensor.grad_fn`, `fg.explain` and `fg.draw_graph` show.  `SAVES` says which
values an op's backward rule reads ("0", "1", ... for inputs, "o" for the
output): only those are checked for in-place modification at backward time,
as PyTorch does with its saved-variable versions.

The compiled core declares the same numbers; a test checks that they match.
"""

# code, name, values the backward rule reads
_TABLE = (
    (0, "leaf", ""),
    (1, "add", ""),
    (2, "sub", ""),
    (3, "mul", "01"),
    (4, "div", "01"),
    (5, "neg", ""),
    (6, "pow", "01o"),
    (7, "matmul", "01"),
    (8, "exp", "o"),
    (9, "log", "0"),
    (10, "sqrt", "o"),
    (11, "abs", "0"),
    (12, "sin", "0"),
    (13, "cos", "0"),
    (14, "tanh", "o"),
    (15, "sigmoid", "o"),
    (16, "relu", "0"),
    (17, "leaky_relu", "0"),
    (18, "clip", "0"),
    (19, "sum", ""),
    (20, "max", "0o"),
    (21, "min", "0o"),
    (22, "logsumexp", "0o"),
    (23, "reshape", ""),
    (24, "permute", ""),
    (25, "expand", ""),
    (26, "index", ""),
    (27, "cat", ""),
    (28, "where", "0"),
    (29, "maximum", "01"),
    (30, "minimum", "01"),
    (31, "cast", ""),
    (32, "function", ""),
    (33, "linear", "01"),
    (34, "cross_entropy", "0"),
    (35, "clone", ""),
    (36, "softmax", "o"),
    (37, "log_softmax", "o"),
)

NAMES = tuple(name for _, name, _ in _TABLE)
SAVES = tuple(saves for _, _, saves in _TABLE)
CODES = {name: code for code, name, _ in _TABLE}
assert all(code == i for i, (code, _, _) in enumerate(_TABLE))

(LEAF, ADD, SUB, MUL, DIV, NEG, POW, MATMUL, EXP, LOG, SQRT, ABS, SIN, COS, TANH,
 SIGMOID, RELU, LEAKY_RELU, CLIP, SUM, MAX, MIN, LOGSUMEXP, RESHAPE, PERMUTE,
 EXPAND, INDEX, CAT, WHERE, MAXIMUM, MINIMUM, CAST, FUNCTION, LINEAR,
 CROSS_ENTROPY, CLONE, SOFTMAX, LOG_SOFTMAX) = range(len(_TABLE))
