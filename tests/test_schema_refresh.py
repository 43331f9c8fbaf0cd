"""tests/data/refresh.py: CRD manifests -> the schema files tests/support/validation.py reads.

Offline: the manifests are written here, the expected files by hand.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.data import refresh

# A Helm-templated CRD (as in Linkerd's CRD chart) with an unserved version, and a
# document that is not a CRD.
MANIFEST = """\
{{- if .Values.installWidgets }}
---
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.io
  annotations:
    {{ include "partials.annotations.created-by" . }}
  labels:
    helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version }}
spec:
  group: example.io
  names:
    kind: Widget
    plural: widgets
  scope: Namespaced
  versions:
    - name: v1alpha1
      served: false
      storage: false
      schema:
        openAPIV3Schema:
          type: object
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          properties:
            spec:
              type: object
              properties:
                size:
                  x-kubernetes-int-or-string: true
                color:
                  type: string
                  enum: [red, "blue"]
{{- end }}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: not-a-crd}
"""
# openAPIV3Schema of v1 as json.dumps(indent=1, sort_keys=True) writes it, plus a newline.
WIDGET_V1 = """\
{
 "properties": {
  "spec": {
   "properties": {
    "color": {
     "enum": [
      "red",
      "blue"
     ],
     "type": "string"
    },
    "size": {
     "x-kubernetes-int-or-string": true
    }
   },
   "type": "object"
  }
 },
 "type": "object"
}
"""
URL = "https://example.invalid/widgets.yaml"
SOURCE = refresh.Source("example/widgets@v1 crds.yaml", (URL,))


def test_a_served_version_becomes_its_schema_file() -> None:
    docs = list(refresh.manifest_documents(MANIFEST))
    assert [d["kind"] for d in docs] == ["CustomResourceDefinition", "ConfigMap"]
    assert refresh.extract_schemas(docs) == {"example.io/widget_v1.json": WIDGET_V1}
    assert refresh.extract_schemas(docs, {"example.io/v1 Widget"}) == {
        "example.io/widget_v1.json": WIDGET_V1}
    assert refresh.extract_schemas(docs, {"example.io/v2 Widget"}) == {}


def test_collect_names_the_kinds_no_source_has() -> None:
    files, origins = refresh.collect([SOURCE], {"example.io/v1 Widget"}, fetch=lambda url: MANIFEST)
    assert files == {"example.io/widget_v1.json": WIDGET_V1}
    assert refresh.index_text(origins) == "example.io/widget_v1.json\texample/widgets@v1 crds.yaml\n"
    with pytest.raises(refresh.RefreshError, match=r"example\.io/v1alpha1 Widget"):
        refresh.collect([SOURCE], {"example.io/v1 Widget", "example.io/v1alpha1 Widget"},
                        fetch=lambda url: MANIFEST)


def test_write_makes_the_directory_hold_exactly_the_schemas(tmp_path: Path) -> None:
    (tmp_path / "old.example.io").mkdir()
    (tmp_path / "old.example.io" / "gadget_v1.json").write_text("{}\n")
    files, origins = refresh.collect([SOURCE], {"example.io/v1 Widget"}, fetch=lambda url: MANIFEST)
    changes = refresh.write(files, origins, tmp_path)
    assert changes == ["removed old.example.io/gadget_v1.json", "wrote INDEX.tsv",
                       "wrote example.io/widget_v1.json"]
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")) == [
        "INDEX.tsv", "example.io", "example.io/widget_v1.json"]
    assert (tmp_path / "example.io" / "widget_v1.json").read_text() == WIDGET_V1
    assert refresh.write(files, origins, tmp_path) == []


def test_no_network_is_a_clear_error_and_changes_nothing(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    def offline(url: str, timeout: float = 0) -> Any:
        raise urllib.error.URLError("Temporary failure in name resolution")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    before = {p: p.read_bytes() for p in refresh.SCHEMA_DIR.rglob("*") if p.is_file()}
    assert refresh.main([]) == 2
    err = capsys.readouterr().err
    assert f"cannot download {refresh.SOURCES[0].urls[0]}: Temporary failure" in err
    assert "nothing was changed" in err
    assert {p: p.read_bytes() for p in refresh.SCHEMA_DIR.rglob("*") if p.is_file()} == before


def test_the_test_data_is_what_the_table_asks_for() -> None:
    """tests/data/schemas holds one file per WANTED entry, each listed in INDEX.tsv."""
    wanted = {refresh.entry_path(entry) for entry in refresh.WANTED}
    present = {p.relative_to(refresh.SCHEMA_DIR).as_posix()
               for p in refresh.SCHEMA_DIR.rglob("*.json")}
    assert present == wanted
    index = dict(line.split("\t") for line in
                 (refresh.SCHEMA_DIR / refresh.INDEX).read_text().splitlines())
    assert set(index) == wanted
    assert set(index.values()) <= {s.origin for s in refresh.SOURCES}
