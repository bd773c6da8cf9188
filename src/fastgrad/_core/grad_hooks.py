"""Post-accumulate-grad hooks and end-of-sweep callbacks, shared by both cores.

A leaf's gradient is final in a sweep once the sweep has run the backward
rule of the leaf's last consumer: the topological order says which node that
is.  A leaf with hooks has its `.grad` written at that moment (the other
leaves keep theirs for the end of the sweep) and its hooks run, so that a
hook can start work on a finished gradient while the sweep goes on
(fastgrad.distributed starts its nonblocking reductions there).

All or nothing still holds: before writing a hooked leaf's `.grad` early,
the sweep records what it held (the tensor, and a copy of its values when
the sweep adds into them in place); if anything raises later in the sweep
(a backward rule, a hook, a callback), every early write is undone in
reverse order, so a failed backward leaves every `.grad` as it was.  What a
hook did besides (a message sent, a counter bumped) is its own to undo: the
callbacks queued with `queue_callback` hear of the failure.

Each core makes one Registry with its own way to snapshot and restore a
`.grad` and to list a node's inputs.  Nothing here runs while no hook is
registered: the sweep tests `registry.hooks` (a dict) once per sweep.
"""
import threading
import weakref

__all__ = ["Registry", "RemovableHandle"]


class RemovableHandle:
    """What `register_post_accumulate_grad_hook` returns: `remove()` takes the hook off.

    Removing twice is harmless.  Usable as a context manager (removed on exit).
    """

    __slots__ = ("_registry", "_key", "id")

    def __init__(self, registry, key, hook_id):
        self._registry = registry
        self._key = key
        self.id = hook_id

    def remove(self):
        self._registry._remove(self._key, self.id)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.remove()
        return False

    def __repr__(self):
        return "RemovableHandle(id=%d)" % self.id


class _SweepState:
    """One sweep's early writes and queued callbacks (made at its first hooked leaf)."""

    __slots__ = ("undo", "callbacks", "thread")

    def __init__(self):
        self.undo = []          # snapshots of the hooked leaves' .grad, in write order
        self.callbacks = []
        self.thread = threading.get_ident()


class Registry:
    """The hooks of one core's tensors, and the sweeps running them.

    snapshot(t) -> record and restore(record): the core's way to remember
    a leaf's `.grad` before an early write and to put it back.
    inputs_of(node): a non-leaf node's inputs (tensors and numbers).
    is_leaf(node), is_tensor(x): the core's tests.
    set_grad_enabled(mode) -> previous: hooks run with recording off, as
    PyTorch runs them.
    """

    def __init__(self, snapshot, restore, inputs_of, is_leaf, is_tensor, set_grad_enabled):
        # id(leaf) -> (weak reference to the leaf, {hook id: hook}).  Read by the
        # sweeps: the dict object is never replaced, only changed.
        self.hooks = {}
        self._snapshot = snapshot
        self._restore = restore
        self._inputs_of = inputs_of
        self._is_leaf = is_leaf
        self._is_tensor = is_tensor
        self._set_grad_enabled = set_grad_enabled
        self._active = []           # states of the sweeps running hooks, innermost last
        self._next_id = 0
        self._lock = threading.Lock()

    # -- registration --------------------------------------------------------
    def register(self, t, hook):
        if not callable(hook):
            raise TypeError("register_post_accumulate_grad_hook: the hook must be callable "
                            "(hook(tensor) -> None), got %s" % type(hook).__name__)
        key = id(t)
        with self._lock:
            self._next_id += 1
            hook_id = self._next_id
            entry = self.hooks.get(key)
            if entry is None:
                # The entry goes when the leaf does: a new tensor at the same
                # address must not inherit its hooks.
                ref = weakref.ref(t, lambda ref, key=key: self._forget(key, ref))
                entry = self.hooks[key] = (ref, {})
            entry[1][hook_id] = hook
        return RemovableHandle(self, key, hook_id)

    def _remove(self, key, hook_id):
        with self._lock:
            entry = self.hooks.get(key)
            if entry is not None:
                entry[1].pop(hook_id, None)
                if not entry[1]:
                    del self.hooks[key]

    def _forget(self, key, ref):
        with self._lock:
            entry = self.hooks.get(key)
            if entry is not None and entry[0] is ref:
                del self.hooks[key]

    # -- inside a sweep --------------------------------------------------------
    def schedule(self, order):
        """[(position, [leaves])], ascending: the hooked leaves whose gradient is
        final once the nodes before order[position] have run (position len(order):
        at the end of the sweep).

        A leaf is due right after its last consumer in the order.  A hooked leaf
        without a consumer (a root) is not listed: the sweep finds it at its own place.
        """
        hooks, is_tensor = self.hooks, self._is_tensor
        last = {}
        for i, node in enumerate(order):
            if self._is_leaf(node):
                continue
            for x in self._inputs_of(node):
                if is_tensor(x) and id(x) in hooks:
                    last[id(x)] = (i + 1, x)
        due = {}
        for position, x in last.values():
            due.setdefault(position, []).append(x)
        return sorted(due.items(), key=lambda item: item[0])

    def leaf_final(self, state, t, accumulate, *args):
        """Write hooked leaf t's `.grad` now (accumulate(*args)), then run its hooks.

        Returns the sweep's state (made on the first call of a sweep); the sweep
        must end with finish(state) or, when anything raised, abort(state, error).
        """
        fresh = state is None
        if fresh:
            state = _SweepState()
            self._active.append(state)
        try:
            state.undo.append(self._snapshot(t))
            accumulate(*args)
            entry = self.hooks.get(id(t))
            if entry is not None:
                previous = self._set_grad_enabled(False)
                try:
                    for hook in list(entry[1].values()):
                        if hook(t) is not None:
                            # as PyTorch: a value returned would look like a new gradient
                            raise RuntimeError(
                                "post-accumulate-grad hook %r returned a value; it must "
                                "return None (change t.grad in place or set it instead)"
                                % (hook,))
                finally:
                    self._set_grad_enabled(previous)
        except BaseException as error:
            if fresh:                 # the sweep never got this state: undo it here
                self.abort(state, error)
            raise
        return state

    def queue_callback(self, fn):
        """Call fn(error) once the running sweep is over (from a hook inside it)."""
        if not callable(fn):
            raise TypeError("queue_callback: expected a callable fn(error), got %s"
                            % type(fn).__name__)
        ident = threading.get_ident()
        for state in reversed(self._active):
            if state.thread == ident:
                state.callbacks.append(fn)
                return
        raise RuntimeError("queue_callback: no backward is running hooks in this thread; "
                           "call it from a post-accumulate-grad hook")

    def finish(self, state):
        """The sweep's nodes are all done: run the callbacks with error None.

        Called before the sweep writes the other leaves' `.grad`: a callback
        that raises fails the whole backward (abort then undoes the early writes).
        """
        while state.callbacks:             # a callback may queue another one
            fn = state.callbacks.pop(0)        # popped first: abort owes the rest a call
            fn(None)
        self._pop(state)

    def abort(self, state, error):
        """The sweep raised `error`: undo the early writes, then tell every callback
        not yet called.  The first exception a callback raises (after all were
        called) replaces `error`; otherwise the caller re-raises `error`."""
        self._pop(state)
        for record in reversed(state.undo):
            self._restore(record)
        state.undo = []
        raised = None
        callbacks, state.callbacks = state.callbacks, []
        for fn in callbacks:
            try:
                fn(error)
            except BaseException as exc:      # every callback is owed its call
                if raised is None:
                    raised = exc
        if raised is not None:
            raise raised

    def _pop(self, state):
        if self._active and self._active[-1] is state:
            self._active.pop()
        elif state in self._active:
            self._active.remove(state)
