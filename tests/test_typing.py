"""The public surface is typed: a user's annotated script passes `mypy --strict`,
mistakes in it are caught, the stubs (`*.pyi` beside each module) agree with
the modules at run time on both cores, and `__all__` lists what the API promises.

mypy comes with the test extra (`pip install ".[test]"`).
"""
import importlib
import importlib.util
import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "data", "typing")
SCRIPT = os.path.join(DATA, "user_script.py")
SOURCE = os.path.join(os.path.dirname(HERE), "src")

# The compiled core's own stub is checked by the core's tests; a user never
# imports fastgrad._core, so its bodies are not the user's concern here.
MYPY_INI = "[mypy]\n\n[mypy-fastgrad._core.*]\nignore_errors = True\n"


@pytest.fixture(scope="module")
def mypy_env(tmp_path_factory):
    pytest.importorskip("mypy", reason="mypy is in the test extra: pip install '.[test]'")
    work = tmp_path_factory.mktemp("mypy")
    ini = work / "mypy.ini"
    ini.write_text(MYPY_INI)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MYPY", "FASTGRAD_"))}
    # The fastgrad these tests import: the source tree (PYTHONPATH=src in a
    # checkout) is given to mypy as such; an installed one mypy finds by itself,
    # as it does in a user's environment.
    spec = importlib.util.find_spec("fastgrad")
    where = os.path.dirname(os.path.dirname(spec.origin))
    if os.path.isdir(SOURCE) and os.path.samefile(where, SOURCE):
        env["MYPYPATH"] = SOURCE
        env["PYTHONPATH"] = os.pathsep.join(p for p in (SOURCE, env.get("PYTHONPATH")) if p)
    return {"env": env, "ini": str(ini), "cache": str(work / "cache"), "work": work}


def run_mypy(mypy_env, path, *extra):
    cmd = [sys.executable, "-m", "mypy", "--strict", "--config-file", mypy_env["ini"],
           "--cache-dir", mypy_env["cache"], "--no-error-summary", "--hide-error-context",
           "--show-error-codes", *extra, str(path)]
    result = subprocess.run(cmd, env=mypy_env["env"], cwd=str(mypy_env["work"]),
                            capture_output=True, text=True, timeout=600)
    return result.returncode, result.stdout + result.stderr


def test_typed_user_script_passes_mypy_strict(mypy_env):
    code, out = run_mypy(mypy_env, SCRIPT)
    assert code == 0, "mypy --strict rejected the typed user script:\n" + out


# Each line below is a mistake a type checker should catch, with the error code
# mypy gives for it.
WRONG = {
    "fg.exp('1.0')": "arg-type",                                   # a str for a tensor
    "fg.zeros(2, 3, requires_grad='yes')": "arg-type",
    "optim.SGD(model.parameters(), lr=0.1, momentun=0.9)": "call-arg",   # misspelt keyword
    "model(fg.randn(2, 3), bogus=1)": "call-arg",                  # forward has no such argument
    "model('x')": "arg-type",                                      # a module checks forward's types
    "nn.Linear(3, 'two')": "arg-type",
    "fg.save({'w': model.state_dict()}, 3.5)": "arg-type",
    "n: str = fg.randn(3).sum()": "assignment",                    # a Tensor is not a str
    "fg.fit(model, nn.MSELoss(), 'sgd', [], epochs=1)": "arg-type",
    "DataLoader(TensorDataset(fg.randn(4, 3)), batch_size=2, shufle=True)": "call-arg",
    "fg.randn(3).backward(retain_graph=1.5)": "arg-type",
}


def test_mistakes_are_rejected(mypy_env, tmp_path):
    lines = ["import fastgrad as fg", "from fastgrad import nn, optim",
             "from fastgrad.utils.data import DataLoader, TensorDataset",
             "model = nn.Linear(3, 2)"]
    first = len(lines) + 1
    lines += list(WRONG)
    path = tmp_path / "wrong.py"
    path.write_text("\n".join(lines) + "\n")
    code, out = run_mypy(mypy_env, path)
    assert code == 1, out
    for number, (line, error_code) in enumerate(WRONG.items(), start=first):
        hits = [o for o in out.splitlines() if o.startswith("%s:%d:" % (path, number))]
        assert hits, "mypy accepted %r:\n%s" % (line, out)
        assert any("[%s]" % error_code in h for h in hits), (line, hits)


def test_user_script_runs(fg, mypy_env, tmp_path):
    # what is type-checked above is also a working program, on each core
    env = dict(mypy_env["env"], FASTGRAD_BACKEND=fg.backend())
    result = subprocess.run([sys.executable, SCRIPT], env=env, cwd=str(tmp_path),
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    assert fg.backend() in result.stdout


def test_stubs_match_the_modules(fg, mypy_env):
    # every name and signature in the stubs exists at run time on this core, and
    # every public name at run time is in a stub (a new function needs its types)
    stubtest = pytest.importorskip("mypy.stubtest")
    assert stubtest
    env = dict(mypy_env["env"], FASTGRAD_BACKEND=fg.backend())
    result = subprocess.run(
        [sys.executable, "-m", "mypy.stubtest", "fastgrad", "--mypy-config-file",
         mypy_env["ini"], "--ignore-disjoint-bases", "--ignore-unused-allowlist",
         "--allowlist", os.path.join(DATA, "stubtest_allowlist.txt")],
        env=env, cwd=str(mypy_env["work"]), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, (
        "the type stubs (the .pyi beside each module) disagree with the code; a changed or new "
        "public signature needs its stub changed too:\n" + result.stdout + result.stderr)


# What the API contract names, module by module (every one must be in __all__).
PROMISED = {
    "fastgrad": """Tensor tensor from_numpy zeros ones full empty zeros_like ones_like arange eye
        randn rand randint manual_seed set_default_dtype get_default_dtype grad no_grad
        enable_grad set_grad_enabled inference_mode Function exp log sqrt abs sin cos tanh
        sigmoid relu leaky_relu clip sum mean max min var std logsumexp softmax log_softmax
        argmax argmin reshape view flatten transpose permute squeeze unsqueeze expand cat
        stack where maximum minimum matmul amax amin fit History EarlyStopping save load
        gradcheck GradcheckError explain detect_anomaly draw_graph backend device cuda
        float32 float64 float double long int64 int32 int bool half float16 FloatTensor
        LongTensor pow mm bmm t einsum linspace randperm rand_like randn_like gather scatter
        scatter_add index_select masked_fill topk sort argsort cumsum tril triu roll split
        chunk contiguous flip repeat eq ne lt le gt ge round floor ceil sign clamp norm
        multinomial nonzero any all isnan isinf isfinite from_dlpack summary get_rng_state
        set_rng_state nn optim data utils distributed""",
    "fastgrad.nn": """Module Parameter Linear Sequential ReLU Sigmoid Tanh LeakyReLU Softmax
        LogSoftmax Identity Flatten Dropout MSELoss L1Loss BCELoss BCEWithLogitsLoss
        CrossEntropyLoss NLLLoss functional init Embedding LayerNorm BatchNorm1d BatchNorm2d
        Conv1d Conv2d MaxPool1d MaxPool2d AvgPool2d AdaptiveAvgPool2d GELU SiLU ELU Softplus
        Hardtanh PReLU MultiheadAttention RNN LSTM GRU RNNCell LSTMCell GRUCell ModuleDict
        ParameterList SmoothL1Loss HuberLoss KLDivLoss utils""",
    "fastgrad.nn.functional": """mse_loss l1_loss binary_cross_entropy
        binary_cross_entropy_with_logits cross_entropy nll_loss relu sigmoid softmax dropout
        one_hot pad scaled_dot_product_attention cosine_similarity normalize smooth_l1_loss
        huber_loss kl_div""",
    "fastgrad.nn.init": "uniform_ normal_ zeros_ xavier_uniform_ kaiming_uniform_",
    "fastgrad.nn.utils": """clip_grad_norm_ clip_grad_value_ parameters_to_vector
        vector_to_parameters""",
    "fastgrad.optim": "SGD Adam AdamW RMSprop Adagrad Adamax Adadelta NAdam LBFGS lr_scheduler",
    "fastgrad.optim.lr_scheduler": """StepLR ExponentialLR LambdaLR ReduceLROnPlateau MultiStepLR
        CosineAnnealingLR CosineAnnealingWarmRestarts OneCycleLR LinearLR SequentialLR""",
    "fastgrad.utils.data": """Dataset TensorDataset DataLoader Sampler RandomSampler
        SequentialSampler BatchSampler Subset random_split""",
    "fastgrad.data": "TensorDataset DataLoader random_split",
    "fastgrad.distributed": """init rank world_size DistributedDataParallel
        DistributedSampler""",
    "fastgrad.io": "save load",
    "fastgrad.autograd": "grad no_grad enable_grad set_grad_enabled inference_mode Function",
}


@pytest.mark.parametrize("module", sorted(PROMISED))
def test_all_lists_the_promised_names(fg, module):
    mod = importlib.import_module(module)
    exported = getattr(mod, "__all__", None)
    assert exported is not None, "%s has no __all__" % module
    assert len(set(exported)) == len(exported), "%s.__all__ repeats a name" % module
    missing = [n for n in PROMISED[module].split() if n not in exported]
    assert not missing, "%s.__all__ lacks %s" % (module, missing)
    absent = [n for n in exported if not hasattr(mod, n)]
    assert not absent, "%s.__all__ names what it does not have: %s" % (module, absent)


def test_star_import_gives_the_public_surface(fg):
    namespace = {}
    exec("from fastgrad import *", namespace)
    assert set(fg.__all__) <= set(namespace)
    assert callable(namespace["tensor"]) and hasattr(namespace["nn"], "Module")
    assert not [n for n in namespace if n.startswith("_") and n not in ("__builtins__",
                                                                         "__version__")]


def test_the_package_says_it_is_typed():
    import fastgrad
    root = os.path.dirname(fastgrad.__file__)
    assert os.path.exists(os.path.join(root, "py.typed"))
    missing = ""
    for sub in ("tensor", "nn/module", "optim/optimizer", "utils/data", "training", "io"):
        if not os.path.exists(os.path.join(root, sub + ".pyi")):
            missing += sub + " "
    assert not missing, "stubs missing beside the modules: " + missing
