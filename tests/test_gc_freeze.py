"""HeapFreezer on the real collector: what gets frozen, when frozen garbage is freed."""

import gc
import weakref

from django.core.checks import run_checks
from django.test import SimpleTestCase, override_settings

from webchat.checks import check_settings
from webchat.gc_freeze import HeapFreezer, heap_freezer


class Node:
    """A container the collector tracks; two of them make a reference cycle."""

    def __init__(self):
        self.other = None


def cycle():
    """A reference cycle (one of its nodes) and a weak reference telling whether it was
    freed."""
    first, second = Node(), Node()
    first.other, second.other = second, first
    return first, weakref.ref(first)


class FakeMemory:
    def __init__(self, value=100 * 2**20):
        self.value = value

    def __call__(self):
        return self.value


class HeapFreezerTests(SimpleTestCase):
    def setUp(self):
        # The process's own freezer may be installed (tests import webchat.asgi): this test
        # drives a freezer of its own and puts the process's back afterwards.
        if heap_freezer.installed:
            heap_freezer.uninstall()
            self.addCleanup(heap_freezer.install)
        self.memory = FakeMemory()
        self.freezer = HeapFreezer(thaw_growth=0.5, memory=self.memory)
        self.assertTrue(self.freezer.install())
        self.addCleanup(self.freezer.uninstall)

    def test_install_freezes_what_is_loaded_and_only_once(self):
        self.assertGreater(gc.get_freeze_count(), 0)
        self.assertTrue(self.freezer.install())
        self.assertEqual(gc.callbacks.count(self.freezer._on_collection), 1)

    def test_what_survives_a_middle_or_full_collection_is_frozen(self):
        before = gc.get_freeze_count()
        keep = [Node() for _ in range(1000)]
        gc.collect(0)  # the youngest generation's survivors are not frozen
        self.assertLess(gc.get_freeze_count(), before + 1000)
        gc.collect(1)
        self.assertGreaterEqual(gc.get_freeze_count(), before + 1000)
        self.assertFalse(any(node is keep[0] for node in gc.get_objects()))
        del keep

    def test_garbage_cycles_die_young_as_usual(self):
        node, freed = cycle()
        del node
        gc.collect(0)
        self.assertIsNone(freed())

    def test_frozen_cycles_wait_for_a_thaw_then_are_collected(self):
        node, freed = cycle()
        gc.collect(1)  # frozen while alive
        del node  # garbage only now
        gc.collect()
        self.assertIsNotNone(freed(), "a frozen cycle is not collected")
        self.memory.value *= 1.6  # more than half again since the last thaw
        gc.collect()  # notices the growth and unfreezes everything
        self.assertEqual(self.freezer.thaws, 1)
        self.assertEqual(gc.get_freeze_count(), 0)
        gc.collect(1)  # nothing is frozen again before the full collection
        self.assertEqual(gc.get_freeze_count(), 0)
        gc.collect()  # the full collection walks the whole heap
        self.assertIsNone(freed())
        self.assertGreater(gc.get_freeze_count(), 0)  # and freezes what it kept
        gc.collect()
        self.assertEqual(self.freezer.thaws, 1, "growth is measured from the last thaw")

    def test_pauses_are_recorded_by_generation(self):
        counts = [self.freezer.pauses[g].count for g in range(3)]
        gc.collect(0)
        gc.collect(1)
        gc.collect(2)
        self.assertEqual(
            [self.freezer.pauses[g].count for g in range(3)], [c + 1 for c in counts]
        )

    def test_uninstall_unfreezes(self):
        self.freezer.uninstall()
        self.assertEqual(gc.get_freeze_count(), 0)
        self.assertNotIn(self.freezer._on_collection, gc.callbacks)


class WithoutMemoryReadingTests(SimpleTestCase):
    def test_not_installed_when_memory_cannot_be_read(self):
        freezer = HeapFreezer(memory=lambda: 0)
        self.assertFalse(freezer.install())
        self.assertNotIn(freezer._on_collection, gc.callbacks)


class CheckTests(SimpleTestCase):
    def test_a_bool_passes(self):
        for value in (True, False):
            with override_settings(WEBCHAT_GC_FREEZE=value):
                self.assertEqual(check_settings(), [])

    @override_settings(WEBCHAT_GC_FREEZE="no")
    def test_anything_else_is_e003(self):
        errors = [e for e in run_checks() if e.id == "webchat.E003"]
        self.assertEqual(len(errors), 1)
        self.assertIn("'no'", errors[0].msg)


class MetricsTests(SimpleTestCase):
    def test_pauses_and_thaws_are_exported(self):
        from webchat.metrics import render

        gc.collect()
        text = render().decode()
        self.assertIn('webchat_gc_pause_seconds_bucket{generation="2",le="0.001"}', text)
        self.assertIn('webchat_gc_pause_seconds_count{generation="0"}', text)
        self.assertIn("webchat_gc_thaws_total", text)
