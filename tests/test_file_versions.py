"""Data versions of input files: by content locally, by the store's identity of the object remotely."""

import os

from upath import UPath

from models.file_versions import file_version, files_version


def test_a_local_file_is_versioned_by_its_bytes(tmp_path):
    path = tmp_path / "catalog.tsv"
    path.write_bytes(b"id\ttags\n1\tjazz\n")
    first, stat = file_version(path), path.stat()
    path.write_bytes(b"id\ttags\n1\tfunk\n")  # same name and size, and the old modification time back
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert file_version(path) != first
    path.write_bytes(b"id\ttags\n1\tjazz\n")
    assert file_version(path) == first == file_version(path.as_uri())


def test_a_folder_version_follows_names_and_contents_not_listing_order(tmp_path):
    (tmp_path / "a.yaml").write_text("one")
    (tmp_path / "b.yaml").write_text("two")
    both = files_version([tmp_path / "a.yaml", tmp_path / "b.yaml"])
    assert files_version([tmp_path / "b.yaml", tmp_path / "a.yaml"]) == both
    (tmp_path / "b.yaml").rename(tmp_path / "c.yaml")
    assert files_version([tmp_path / "a.yaml", tmp_path / "c.yaml"]) != both


def test_a_remote_object_is_versioned_by_its_store_identity():
    remote = UPath("memory://setlist-test-drops/catalog.tsv")
    remote.write_bytes(b"abc")
    first = file_version(str(remote))
    assert file_version(str(remote)) == first
    remote.write_bytes(b"abd")  # a new object version: a new identity in the store
    assert file_version(str(remote)) != first
    remote.fs.rm(remote.path)
