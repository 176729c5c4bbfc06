"""Writes CIFAR-10's other published forms from a binary-version folder, as the tests need them.

    python cifar_forms.py forms BIN_DIR OUT_DIR
        OUT_DIR/cifar-10-batches-py/    the Python version: each batch a dict pickled with
                                        protocol 2 and byte-string keys, as Python 2 wrote the
                                        published files ('batch_label', 'labels' a list,
                                        'data' a (10000, 3072) uint8 array, 'filenames')
        OUT_DIR/py3/                    the same batches pickled by Python 3 (str keys,
                                        protocol 5, where numpy pickles arrays differently)
        OUT_DIR/cifar-10-binary.tar.gz  BIN_DIR's files under cifar-10-batches-bin/
        OUT_DIR/cifar-10-python.tar.gz  the Python version under cifar-10-batches-py/
        OUT_DIR/no-test.tar.gz          the Python archive without its test_batch

    python cifar_forms.py bad OUT_DIR
        OUT_DIR/shape/test_batch        'data' of shape (10000, 32, 32, 3)
        OUT_DIR/dtype/test_batch        'data' of dtype float32
        OUT_DIR/list/test_batch         a pickled list, not a dict
"""

import os
import pickle
import sys
import tarfile

import numpy as np

RECORDS = 10000
TRAIN = [f"data_batch_{i}" for i in range(1, 6)]
CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def read_binary(path):
    records = np.fromfile(path, dtype=np.uint8).reshape(RECORDS, 1 + 3072)
    return records[:, 0].tolist(), np.ascontiguousarray(records[:, 1:])


def batch(name, labels, data, byte_keys):
    d = {
        "batch_label": f"{name} of CIFAR-10",
        "labels": labels,
        "data": data,
        "filenames": [f"image_{i}.png" for i in range(len(labels))],
    }
    if byte_keys:
        d = {k.encode(): (v.encode() if isinstance(v, str) else v) for k, v in d.items()}
        d[b"filenames"] = [f.encode() for f in d[b"filenames"]]
    return d


def dump(obj, path, protocol):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=protocol)


def tar_folder(folder, arcname, path, skip=()):
    with tarfile.open(path, "w:gz", compresslevel=1) as t:
        t.add(folder, arcname=arcname, filter=lambda m: None if os.path.basename(m.name) in skip else m)


def forms(bin_dir, out):
    py = os.path.join(out, "cifar-10-batches-py")
    for name in TRAIN + ["test_batch"]:
        labels, data = read_binary(os.path.join(bin_dir, name + ".bin"))
        dump(batch(name, labels, data, True), os.path.join(py, name), 2)
        dump(batch(name, labels, data, False), os.path.join(out, "py3", name), 5)
    meta = {b"label_names": [c.encode() for c in CLASSES], b"num_cases_per_batch": RECORDS, b"num_vis": 3072}
    dump(meta, os.path.join(py, "batches.meta"), 2)
    tar_folder(bin_dir, "cifar-10-batches-bin", os.path.join(out, "cifar-10-binary.tar.gz"))
    tar_folder(py, "cifar-10-batches-py", os.path.join(out, "cifar-10-python.tar.gz"))
    tar_folder(py, "cifar-10-batches-py", os.path.join(out, "no-test.tar.gz"), skip=("test_batch",))


def bad(out):
    labels = [i % 10 for i in range(RECORDS)]
    shaped = np.zeros((RECORDS, 32, 32, 3), dtype=np.uint8)
    dump(batch("test_batch", labels, shaped, True), os.path.join(out, "shape", "test_batch"), 2)
    floats = np.zeros((RECORDS, 3072), dtype=np.float32)
    dump(batch("test_batch", labels, floats, True), os.path.join(out, "dtype", "test_batch"), 2)
    dump([1, 2, 3], os.path.join(out, "list", "test_batch"), 2)


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "forms":
        forms(sys.argv[2], sys.argv[3])
    elif len(sys.argv) == 3 and sys.argv[1] == "bad":
        bad(sys.argv[2])
    else:
        sys.exit(__doc__)
