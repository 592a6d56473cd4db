"""A real pymodbus RTU server (ModbusSerialServer + SimDevice) on a serial path, run
in its own event-loop thread so a synchronous test can talk to it through a pty."""
import asyncio
import threading

from pymodbus import FramerType
from pymodbus.server import ModbusSerialServer
from pymodbus.simulator import DataType, SimData, SimDevice


class RtuServer:
    """pymodbus ModbusSerialServer (RTU) on the pty slave, in its own event loop thread."""

    def __init__(self, path, holding, inputs, unit=1):
        dev = SimDevice(id=unit, simdata=(
            [SimData(0, count=1, values=0, datatype=DataType.BITS)],
            [SimData(0, count=1, values=0, datatype=DataType.BITS)],
            [SimData(0, values=list(holding), datatype=DataType.REGISTERS)],
            [SimData(0, values=list(inputs), datatype=DataType.REGISTERS)],
        ))
        self.unit = unit
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

        async def start():  # pymodbus wants its running loop at construction
            self.server = ModbusSerialServer(dev, framer=FramerType.RTU, port=path, baudrate=19200)
            await self.server.serve_forever(background=True)

        self._call(start())

    def _call(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(5)

    def set_holding(self, addr, values):
        self._call(self.server.async_setValues(self.unit, 3, addr, values))

    def close(self):
        self._call(self.server.shutdown())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()
