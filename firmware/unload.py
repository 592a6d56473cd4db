"""Free modules that are needed only at boot or on a rare downlink.

On a board without frozen modules (stock MicroPython plus `.mpy` files copied by
`stationctl flash`) a module's bytecode lives in the heap for as long as the module
can be reached. Dropping it from sys.modules and from its package lets the collector
take it back, provided no live object still refers to one of its classes or
functions (their globals keep the whole module alive). Importing it again later
loads it again: slow, and in a fragmented heap it can fail with MemoryError, so only
code off the alarm path is dropped, and its callers handle that error.

A no-op on CPython, where tests hold modules and their exception classes by
identity and the heap is not the constraint."""
import sys

# What checking a config loads (firmware/nodeconfig.py and what it imports) and the CBOR
# decoder that reads a CONFIG downlink (nothing else on the node decodes CBOR): needed at
# boot and for a CONFIG downlink. firmware/main.py drops them after boot; a CONFIG then
# loads them for a moment and drops them again (firmware/app.py: where boot kept them,
# they are kept).
CONFIG_MODULES = ("firmware.nodeconfig", "protocol.ruleparse", "protocol.channels",
                  "protocol.cbordecode", "firmware.downlink")


def unload(name):
    if sys.implementation.name != "micropython":
        return
    sys.modules.pop(name, None)
    pkg_name, _, attr = name.rpartition(".")
    pkg = sys.modules.get(pkg_name)
    if pkg is not None and attr in pkg.__dict__:
        delattr(pkg, attr)


def unload_config():
    for name in CONFIG_MODULES:
        unload(name)


def config_dropped():
    """True where boot dropped the config checks (they are not loaded now)."""
    return CONFIG_MODULES[0] not in sys.modules
