"""bench/hlo_collectives.py on hand-written HLO lines: CPU (sync) and GPU (async) forms."""

from facedeblur_jax.bench import hlo_collectives as hc

HLO = """
HloModule jit_body, entry_computation_layout={()->()}

%region_0.1 (a: f32[], b: f32[]) -> f32[] {
  ROOT %add = f32[] add(f32[] %a, f32[] %b)
}

ENTRY %main {
  %p = f32[10]{0} parameter(0)
  %all-reduce.7 = (f32[10]{0}, f32[], /*index=2*/f32[]) all-reduce(%p, %c, %d), \
channel_id=1, to_apply=%region_0.1, metadata={op_name="jit(body)/psum_invariant" id=3}
  %psum.2 = f32[2,16]{1,0} all-reduce(%q), replica_groups={{0,1}}, to_apply=%region_0.1, \
metadata={op_name="jit(body)/bn/psum"}
  %all-reduce-start.3 = bf16[4,4,3,8]{3,2,1,0} all-reduce-start(%r), to_apply=%region_0.1
  %all-reduce-done.3 = bf16[4,4,3,8]{3,2,1,0} all-reduce-done(%all-reduce-start.3)
  ROOT %t = () tuple()
}
"""


def test_all_reduces_sync_async_and_combined():
    ars = hc.all_reduces(HLO)
    assert [a.name for a in ars] == ["all-reduce.7", "psum.2", "all-reduce-start.3"]
    assert ars[0].arrays == (("f32", (10,)), ("f32", ()), ("f32", ()))
    assert ars[0].elements == 12 and ars[0].op_name.endswith("psum_invariant")
    assert ars[1].arrays == (("f32", (2, 16)),) and ars[1].op_name == "jit(body)/bn/psum"
    assert ars[2].arrays == (("bf16", (4, 4, 3, 8)),) and ars[2].op_name == ""
    assert ars[0].holds((10,)) and not ars[0].holds((10,), "bf16")


def test_gradient_summary():
    s = hc.gradient_all_reduce_summary(HLO, 10)
    assert s["all_reduces"] == 3 and s["gradient_all_reduces"] == 1
    assert s["gradient"][0]["arrays"] == ["f32[10]", "f32[]", "f32[]"]
    assert s["other_all_reduces"] == 2 and s["other_elements"] == 32 + 4 * 4 * 3 * 8
    assert hc.gradient_all_reduce_summary(HLO, 11)["gradient_all_reduces"] == 0
