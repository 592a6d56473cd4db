"""A text progress bar on stderr for long steps; silent when stderr is not a terminal
(so logs and test output stay clean)."""
import sys


class Progress:
    def __init__(self, label, total, stream=None, width=30):
        self.label = label
        self.total = max(1, total)
        self.stream = stream or sys.stderr
        self.width = width
        self.active = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.done = 0

    def update(self, done, note=""):
        self.done = min(done, self.total)
        if not self.active:
            return
        filled = self.width * self.done // self.total
        self.stream.write("\r%s [%s%s] %3d%% %s\x1b[K" % (
            self.label, "#" * filled, "-" * (self.width - filled),
            100 * self.done // self.total, note))
        self.stream.flush()

    def advance(self, n=1, note=""):
        self.update(self.done + n, note)

    def finish(self):
        if self.active:
            self.update(self.total)
            self.stream.write("\n")
            self.stream.flush()
