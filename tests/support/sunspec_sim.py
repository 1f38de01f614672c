"""A SunSpec inverter on Modbus TCP for tests: a small, complete Modbus TCP server (read holding registers,
write single/multiple registers) over a SunSpec register map, running in its own thread on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import struct
import threading

from support import free_port


def text(s: str, regs: int) -> list[int]:
    raw = s.encode().ljust(regs * 2, b"\0")
    return [int.from_bytes(raw[i : i + 2], "big") for i in range(0, regs * 2, 2)]


def sunspec_map(watts: int = 4321, hz_centi: int = 5002, wh: int = 1_234_567) -> dict[int, int]:
    """Registers from 40000: SunS, common (1), inverter (103), nameplate (120), controls (123), end."""
    regs: list[int] = [0x5375, 0x6E53]
    common = (
        text("OpenDSO Sim", 16) + text("INV-5K", 16) + text("", 8) + text("1.2.3", 8) + text("SN-0042", 16)
    )
    common += [1, 0]  # DA, pad
    regs += [1, len(common)] + common
    inverter = [0] * 50
    inverter[0:5] = [120, 40, 40, 40, 0xFFFF]  # A (SF -1 -> 12.0 A)
    inverter[8], inverter[11] = 2305, 0xFFFF  # PhVphA 230.5 V
    inverter[12], inverter[13] = watts, 0  # W
    inverter[14], inverter[15] = hz_centi, 0xFFFE  # Hz, SF -2
    inverter[18], inverter[19] = (-150) & 0xFFFF, 0  # VAr (signed)
    inverter[20], inverter[21] = 98, 0  # PF 98 %
    inverter[22], inverter[23], inverter[24] = wh >> 16, wh & 0xFFFF, 0  # WH acc32
    inverter[36] = 4  # St: MPPT
    regs += [103, 50] + inverter
    nameplate = [0] * 26
    nameplate[0:3] = [4, 5000, 0]  # DERTyp PV, WRtg 5000 W
    regs += [120, 26] + nameplate
    controls = [0] * 24
    controls[2] = 1  # Conn
    controls[3] = 1000  # WMaxLimPct 100.0 % with SF -1
    controls[21] = 0xFFFF  # WMaxLimPct_SF = -1
    regs += [123, 24] + controls
    regs += [0xFFFF, 0]
    return {40000 + i: v for i, v in enumerate(regs)}


class SunSpecSimulator:
    def __init__(self, registers: dict[int, int] | None = None, unit_id: int = 1) -> None:
        self.registers = registers if registers is not None else sunspec_map()
        self.unit_id = unit_id
        self.port = free_port()
        self.writes: list[tuple[int, int]] = []
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.base_events.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()  # one per client connection, while it lasts
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def address_of(self, model_id: int) -> int:
        """First data register of a model in the map (to check what the gateway wrote)."""
        address = 40002
        while self.registers[address] != 0xFFFF:
            if self.registers[address] == model_id:
                return address + 2
            address += 2 + self.registers[address + 1]
        raise KeyError(model_id)

    def __enter__(self) -> SunSpecSimulator:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(5)
        return self

    def __exit__(self, *exc) -> None:
        async def close() -> None:
            assert self._server is not None
            self._server.close()
            # before Python 3.12 closing a server leaves the connections it accepted open (the server under test
            # keeps its Modbus connection to the inverter): end them, each closing its transport, while the loop
            # still runs
            for connection in list(self._connections):
                connection.cancel()
            await asyncio.gather(*self._connections, return_exceptions=True)
            await self._server.wait_closed()

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        # closed here, by its owner, not by the garbage collector at some later point (a ResourceWarning raised
        # in the loop's __del__ then, inside whatever test happens to run)
        self._loop.close()

    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    def _answer(self, unit: int, pdu: bytes) -> bytes:
        function = pdu[0]
        if unit != self.unit_id:
            return bytes([function | 0x80, 0x0B])  # gateway target failed to respond
        if function == 0x03:
            address, count = struct.unpack(">HH", pdu[1:5])
            if not 1 <= count <= 125 or any(a not in self.registers for a in range(address, address + count)):
                return bytes([0x83, 0x02])  # illegal data address
            values = [self.registers[a] for a in range(address, address + count)]
            return bytes([0x03, 2 * count]) + struct.pack(f">{count}H", *values)
        if function == 0x06:
            address, value = struct.unpack(">HH", pdu[1:5])
            if address not in self.registers:
                return bytes([0x86, 0x02])
            self.registers[address] = value
            self.writes.append((address, value))
            return pdu[:5]
        if function == 0x10:
            address, count, _ = struct.unpack(">HHB", pdu[1:6])
            values = struct.unpack(f">{count}H", pdu[6 : 6 + 2 * count])
            for i, value in enumerate(values):
                self.registers[address + i] = value
                self.writes.append((address + i, value))
            return pdu[:5]
        return bytes([function | 0x80, 0x01])  # illegal function

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connection = asyncio.current_task()
        assert connection is not None
        self._connections.add(connection)
        try:
            while True:
                header = await reader.readexactly(7)
                transaction, protocol, length, unit = struct.unpack(">HHHB", header)
                pdu = await reader.readexactly(length - 1)
                answer = self._answer(unit, pdu)
                writer.write(struct.pack(">HHHB", transaction, protocol, len(answer) + 1, unit) + answer)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self._connections.discard(connection)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
