"""One SunSpec conversation with a device: connect, find the model chain, read or write blocks."""

from __future__ import annotations

from types import TracebackType

from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException

from server.modbus import sunspec


class GatewayError(Exception):
    """The device could not be reached or does not speak SunSpec as expected."""


class SunSpecClient:
    def __init__(self, host: str, port: int, unit_id: int, timeout_s: float) -> None:
        self.unit_id = unit_id
        self.client = AsyncModbusTcpClient(host, port=port, timeout=timeout_s, retries=0)
        self.blocks: dict[int, sunspec.ModelBlock] = {}

    async def __aenter__(self) -> SunSpecClient:
        if not await self.client.connect():
            raise GatewayError(
                f"cannot connect to {self.client.comm_params.host}:{self.client.comm_params.port}"
            )
        try:
            await self._discover()
        except BaseException:
            self.client.close()
            raise
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.client.close()

    async def read(self, address: int, count: int) -> list[int]:
        try:
            response = await self.client.read_holding_registers(address, count=count, device_id=self.unit_id)
        except ModbusException as exc:
            raise GatewayError(f"read {address}+{count}: {exc}") from None
        if response.isError():
            raise GatewayError(f"read {address}+{count}: device answered {response}")
        return list(response.registers)

    async def write(self, address: int, value: int) -> None:
        try:
            response = await self.client.write_register(address, value, device_id=self.unit_id)
        except ModbusException as exc:
            raise GatewayError(f"write {address}: {exc}") from None
        if response.isError():
            raise GatewayError(f"write {address}: device answered {response}")

    async def _discover(self) -> None:
        for base in sunspec.BASE_ADDRESSES:
            try:
                if tuple(await self.read(base, 2)) == sunspec.SUNS:
                    break
            except GatewayError:
                continue
        else:
            raise GatewayError("no SunSpec marker at 40000, 0 or 50000")
        address = base + 2
        for _ in range(64):  # a corrupt map must not loop forever
            model_id, length = await self.read(address, 2)
            if model_id == sunspec.END_MODEL or length == 0:
                return
            self.blocks.setdefault(model_id, sunspec.ModelBlock(model_id, address + 2, length))
            address += 2 + length
        raise GatewayError("SunSpec model chain does not end")

    async def block(self, model_id: int) -> list[int]:
        found = self.blocks.get(model_id)
        if found is None:
            raise GatewayError(f"device has no SunSpec model {model_id}")
        data: list[int] = []
        for start in range(0, found.length, 120):  # Modbus reads are capped at 125 registers
            data += await self.read(found.address + start, min(120, found.length - start))
        return data

    def inverter_model(self) -> int | None:
        return next((m for m in sunspec.INVERTER_MODELS if m in self.blocks), None)
