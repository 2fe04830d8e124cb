"""The reader refuses what would corrupt or stall an import: rows longer than the header, gzip bombs, giant files."""

from __future__ import annotations

import gzip
import io

import openpyxl
import pytest

from preprocessing.columns import FileFormatError, read_table


def read_all(data: bytes, name: str = "upload.csv", **kwargs):
    with read_table(io.BytesIO(data), name, **kwargs) as reader:
        return list(reader)


@pytest.mark.parametrize("sep, word", [(",", "comma"), ("\t", "tab")])
def test_a_first_data_row_longer_than_the_header_is_refused_not_shifted(sep, word):
    # pandas used to read the extra leading field as an index: customer ids "Smith", "Jane Doe", ...
    data = (
        sep.join(["customer_id", "name", "phone"])
        + "\n"
        + sep.join(["RR1", "Smith", " John", "+12025550101"])
        + "\n"
        + sep.join(["RR2", "Jane Doe", "+12025550102"])
        + "\n"
    )
    with pytest.raises(FileFormatError) as caught:
        read_all(data.encode())
    assert "Row 2 has 4 values but the header has 3 columns" in caught.value.message
    assert f"unquoted {word}" in caught.value.message


@pytest.mark.parametrize("sep", [",", "\t"])
@pytest.mark.parametrize("bad_row", [3, 7, 12])  # within the first chunk, at a chunk's start, in the last chunk
def test_a_later_row_longer_than_the_header_is_refused_with_its_row_number(sep, bad_row):
    rows = [sep.join([f"C{i}", f"Name {i}", "+12025550100"]) for i in range(2, 13)]
    rows[bad_row - 2] = sep.join([f"C{bad_row}", "Smith", " John", "+12025550100"])
    data = (sep.join(["customer_id", "name", "phone"]) + "\n" + "\n".join(rows) + "\n").encode()
    with pytest.raises(FileFormatError, match=f"Row {bad_row} has 4 values"):
        read_all(data, chunksize=5)


def test_quoted_commas_are_values_and_chunks_keep_their_size():
    data = b'customer_id,name,phone\nRR1,"Smith, John",+1202\nRR2,"Doe, Jane",+1203\nRR3,x,y\n'
    chunks = read_all(data, chunksize=2)
    assert [list(c.index) for c in chunks] == [[2, 3], [4]]
    assert chunks[0].loc[2].tolist() == ["RR1", "Smith, John", "+1202"]


def test_a_gzip_that_expands_beyond_the_cap_is_refused_while_decompressing():
    bomb = gzip.compress(b"customer_id,quantity\n" + b"C1,1\n" * 400_000)  # ~2 MB expanded, a few KB stored
    assert len(bomb) < 20_000
    with pytest.raises(FileFormatError, match="expands to more than 1 MB"):
        read_all(bomb, "bomb.csv.gz", max_expanded_bytes=1 << 20)
    assert sum(len(c) for c in read_all(bomb, "bomb.csv.gz", max_expanded_bytes=4 << 20)) == 400_000


def test_more_rows_than_the_cap_are_refused_at_opening_or_while_reading():
    with pytest.raises(FileFormatError, match="more than 10 rows"):
        read_table(io.BytesIO(b"a,b\n" + b"1,2\n" * 11), "x.csv", max_rows=10)
    assert sum(len(c) for c in read_all(b"a,b\n" + b"1,2\n" * 10, max_rows=10)) == 10
    unterminated = b"a,b\n" + b"1,2\n" * 10 + b"1,2"  # 11 rows, 11 line breaks: found while reading
    with pytest.raises(FileFormatError, match="more than 10 rows"):
        read_all(unterminated, max_rows=10, chunksize=4)
    book = openpyxl.Workbook()
    book.active.append(["a", "b"])
    for i in range(11):
        book.active.append([i, i])
    buffer = io.BytesIO()
    book.save(buffer)
    with pytest.raises(FileFormatError, match="more than 10 rows"):
        read_all(buffer.getvalue(), "x.xlsx", max_rows=10)
