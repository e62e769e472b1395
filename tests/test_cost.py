"""The cost model: FLOPs from the layer shapes, the per-job budget, chunks sized by cost."""

import re

from shared.cost import Budget, filter_flops, job_cost, over_budget, split_by_cost
from shared.spec import JobSpec, Limits, parse_spec

# One CPU worker of two cores (FILTERVIZ_WORKER_GFLOPS's default) and the default chunk time limit.
DEFAULT_BUDGET = Budget.for_workers(worker_gflops=80, chunk_time_limit=3600, job_tflop=0, output_mb=512)
# The largest job the default limits admit (the widest grid under FILTERVIZ_MAX_GRID_SIDE at 512 px).
LARGEST = {"layer": "block5_conv3", "filters": {"start": 0, "stop": 512}, "image_size": 512, "steps": 200,
           "grid": {"n": 7, "margin": 64}}  # fmt: skip


def test_flops_are_counted_from_the_layer_shapes():
    # The security review's figures: the default job is ~75 TFLOP, the largest the limits allow ~32.8 PFLOP.
    assert round(job_cost(parse_spec({})).flops / 1e12, 1) == 75.3
    assert round(job_cost(parse_spec(LARGEST)).flops / 1e15, 1) == 32.8


def test_output_bytes_count_every_picture_and_the_grid():
    spec = parse_spec({"layer": "block1_conv1", "filters": [0, 1], "image_size": 32, "grid": {"n": 2, "margin": 1}})
    assert job_cost(spec).output_bytes == (2 * 32 * 32 + 65 * 65) * 3


def test_by_default_the_largest_admitted_job_fits_one_chunk_time_limit():
    assert DEFAULT_BUDGET.job_flops / (80e9) <= 3600
    assert over_budget(parse_spec({}), DEFAULT_BUDGET) is None


def test_over_budget_says_by_how_much_and_what_to_shrink_to_fit():
    spec = parse_spec(LARGEST)
    reason = over_budget(spec, DEFAULT_BUDGET)
    assert "32841.0 TFLOP, 228.1x the per-job budget of 144.0 TFLOP" in reason
    most_filters = int(re.search(r"at most (\d+) filters", reason).group(1))
    smaller = parse_spec({**LARGEST, "filters": {"start": 0, "stop": most_filters}})
    assert over_budget(smaller, DEFAULT_BUDGET) is None
    bigger = parse_spec({**LARGEST, "filters": {"start": 0, "stop": most_filters + 1}})
    assert over_budget(bigger, DEFAULT_BUDGET) is not None


def test_a_filter_that_cannot_finish_within_a_chunk_is_refused_even_under_a_large_job_budget():
    budget = Budget.for_workers(worker_gflops=80, chunk_time_limit=60, job_tflop=1000, output_mb=512)
    one_filter = parse_spec({**LARGEST, "filters": [0]})
    assert "what a chunk may take within its time limit" in over_budget(one_filter, budget)


def test_a_grid_too_large_to_decode_is_refused():
    raised = Limits(max_image_size=2048, max_grid_n=16, max_grid_side=32768)
    spec = parse_spec({"layer": "block1_conv1", "filters": [0], "image_size": 2048, "steps": 1,
                       "grid": {"n": 16, "margin": 0}}, raised)  # fmt: skip
    assert spec.grid.n == 1  # the grid that holds one filter
    spec = JobSpec.model_validate({**spec.model_dump(), "grid": {"n": 16, "margin": 0}})  # as stored before 0.2.0
    assert "the grid would be 32768 px a side" in over_budget(spec, DEFAULT_BUDGET)


def test_chunks_are_sized_by_cost_and_keep_every_filter_in_order():
    spec = parse_spec({})
    per_filter = filter_flops(spec)
    chunks = split_by_cost(spec.filters, per_filter, max_chunk_flops=5.5 * per_filter, max_count=32)
    assert [len(chunk) for chunk in chunks] == [5] * 40
    assert [f for chunk in chunks for f in chunk] == spec.filters
    cheap = split_by_cost(spec.filters, per_filter, max_chunk_flops=1e30, max_count=32)
    assert [len(chunk) for chunk in cheap] == [32] * 6 + [8]


def test_methods_that_show_the_network_more_pixels_cost_more():
    base = {"layer": "block3_conv1", "filters": [0], "image_size": 64, "steps": 10}
    one_crop = parse_spec({**base, "method": "maco", "method_params": {"crops": 1}})
    four_crops = parse_spec({**base, "method": "maco", "method_params": {"crops": 4}})
    assert filter_flops(four_crops) == 4 * filter_flops(one_crop)
    padded = parse_spec({**base, "method": "fourier", "method_params": {"pad": 16}})
    assert filter_flops(padded) == filter_flops(parse_spec({**base, "image_size": 96}))
