"""The regression gate: two source trees measured in the same run, interleaved (`run`), the
measuring process for one tree (`worker`), and the gate's proven detection rates (`proof`)."""
