"""The lab: diagnosis studies that import aiot and feed no default. Never imported by aiot, not in the wheel."""
