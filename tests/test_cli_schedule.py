from dforce.cli.schedule import format_matrix
from dforce.sampling.scheduling import pyramid


def test_format_matrix_prints_one_aligned_line_per_row():
    lines = format_matrix(pyramid(3, 2)).splitlines()
    assert lines[0] == "row | 0 1 2" and set(lines[1]) == {"-"}
    assert lines[2:] == ["  0 | 2 2 2", "  1 | 1 2 2", "  2 | 0 1 2", "  3 | 0 0 1", "  4 | 0 0 0"]
