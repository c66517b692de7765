"""Monitor recordings that compiled kernels can append to.

Brian's monitors store their data in dynamic arrays that only Python can
resize (C++ behind Cython in Brian >= 2.10; a view dangles after a growing
resize). Resizing them every time step costs Python calls per step, so the
monitor kernels append to ``PendingRecords`` instead: plain numpy buffers
(one row per spike or per time step) and a count of pending rows. The
kernels keep the monitor's ``N`` current themselves.

The rows are handed to Brian's arrays ("flushed") when the buffers are full,
after each run, and whenever Python reads one of the recorded variables (its
``get_value``/``get_len`` flush first), so users and other targets always see
complete recordings.
"""

import numpy as np

from .in_place import resize

__all__ = ["PendingRecords", "records_for"]

#: about this many values (rows x columns) are buffered before a flush
BUFFER_VALUES = 1 << 20


class PendingRecords:
    """Rows recorded by a kernel but not yet in the monitor's arrays.

    ``arrays`` holds one buffer per recorded variable, in the order of
    ``names``; 2-D variables (StateMonitor) get buffers of shape
    ``(rows, columns)``. ``num_pending[0]`` is the number of pending rows.
    The arrays are never replaced (only resized in place), so code objects
    bind them once as kernel arguments.
    """

    def __init__(self, monitor, names):
        self.monitor = monitor
        self.names = tuple(names)
        self.variables = [monitor.variables[name] for name in self.names]
        self.columns = [self._columns(var) for var in self.variables]
        row_width = max(1, sum(max(c, 1) for c in self.columns))
        self.num_pending = np.zeros(1, dtype=np.int64)
        self.arrays = self._allocate(max(16, BUFFER_VALUES // row_width))
        for var in self.variables:
            self._flush_before_reading(var)

    def _columns(self, var):
        return self.monitor.n_indices if var.ndim == 2 else 0

    def _allocate(self, rows):
        return tuple(
            np.zeros((rows, columns) if var.ndim == 2 else rows, dtype=var.dtype)
            for var, columns in zip(self.variables, self.columns, strict=True)
        )

    def namespace(self):
        """The buffers under the names the templates use (``_pending_<name>``)."""
        names = {"_pending": self, "_num_pending": self.num_pending}
        names.update(
            {f"_pending_{name}": array for name, array in zip(self.names, self.arrays, strict=True)}
        )
        return names

    @property
    def capacity(self):
        return len(self.arrays[0]) if self.arrays else 0  # no variables: count only

    def _flush_before_reading(self, var):
        """Make Python reads of ``var`` see the pending rows too."""
        cls = type(var)

        def get_value():
            self.flush()
            return cls.get_value(var)

        def get_len():
            self.flush()
            return cls.get_len(var)

        var.get_value = get_value
        var.get_len = get_len

    def flush(self):
        """Append the pending rows to the monitor's dynamic arrays."""
        pending = int(self.num_pending[0])
        self.num_pending[0] = 0
        if pending == 0 or not self.variables:
            return
        first = self.variables[0]
        old_len = len(type(first).get_value(first))
        self.monitor.resize(old_len + pending)  # also keeps Variable.size right
        for var, buffer in zip(self.variables, self.arrays, strict=True):
            type(var).get_value(var)[old_len : old_len + pending] = buffer[:pending]

    def make_room(self, rows):
        """Flush, and grow the buffers if ``rows`` rows would not fit even then.

        Buffers grow in place (same array objects), so kernels that got them
        as arguments keep working.
        """
        self.flush()
        if rows > self.capacity:
            new_rows = max(rows, 2 * self.capacity)
            for array, columns in zip(self.arrays, self.columns, strict=True):
                resize(array, (new_rows, columns) if array.ndim == 2 else new_rows)


def records_for(monitor, names):
    """The ``PendingRecords`` of ``monitor`` for the recorded ``names``."""
    records = getattr(monitor, "_numba_records", None)
    if records is None or records.names != tuple(names):
        if records is not None:
            records.flush()
        records = PendingRecords(monitor, names)
        monitor._numba_records = records
    return records
