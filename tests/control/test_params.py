"""The typed requests of ``control/params.py``: what each method accepts, the messages a
wrong value gets (each names its param), and the round trip hasherctl relies on."""

from __future__ import annotations

from typing import Any

import pytest

from hasherd.control.params import (
    INT64_MAX,
    INT64_MIN,
    DeployLayer,
    JobOptions,
    JobRef,
    ListJobs,
    ListWeights,
    NoParams,
    Params,
    RestartActor,
    SetPriority,
    ShowValidation,
    StartValidation,
    SubmitJob,
)
from hasherd.control.protocol import error_code
from hasherd.errors import InputError

REQUESTS: list[Params] = [
    NoParams(),
    SubmitJob("/srv/corpus"),
    SubmitJob("/srv/a.md", "night", JobOptions(epochs=4, seed=-3, strict=False)),
    ListJobs(),
    ListJobs("paused"),
    JobRef(7),
    SetPriority(7, 1000),
    SubmitJob("/d", None, JobOptions(zero_bits=0, passes=1024, epochs=100), priority=1),
    ListWeights(),
    ListWeights(1, 0, 100_000),
    RestartActor("numba0"),
    StartValidation(),
    StartValidation(job=3, run=2, sample=0.5, seed=INT64_MIN, evaluator="chain0", against="x"),
    ShowValidation(),
    ShowValidation(2),
    DeployLayer(0),
    DeployLayer(INT64_MAX, True, 0.5, 12, "lenient"),
]


@pytest.mark.parametrize("request_", REQUESTS, ids=repr)
def test_parse_reads_back_what_to_params_sends(request_: Params) -> None:
    assert type(request_).parse(request_.to_params()) == request_


def test_to_params_sends_only_what_differs_from_the_defaults() -> None:
    assert SubmitJob("/d").to_params() == {"data": "/d"}
    assert SubmitJob("/d", None, JobOptions(epochs=3, strict=True)).to_params() == {
        "data": "/d",
        "epochs": 3,
        "strict": True,
    }
    assert DeployLayer(1).to_params() == {"layer": 1}
    assert StartValidation(sample=1).to_params() == {"sample": 1}  # as given: an int stays one
    assert NoParams().to_params() == {}


def test_null_is_the_same_as_left_out() -> None:
    assert ListWeights.parse({"dataset": None, "limit": None}) == ListWeights()
    assert DeployLayer.parse({"layer": 2, "dry_run": None}) == DeployLayer(2)


BAD: list[tuple[type[Params], dict[str, Any], str]] = [
    (NoParams, {"x": 1}, "x: unknown parameter"),
    (JobRef, {}, "id: expected an integer, got None"),
    (JobRef, {"id": "7"}, "id: expected an integer, got '7'"),
    (JobRef, {"id": True}, "id: expected an integer, got True"),
    (JobRef, {"id": 7, "b": 1, "a": 2}, "a: unknown parameter"),
    (JobRef, {"id": 2**63}, f"id: must be in {INT64_MIN}..{INT64_MAX}"),
    (JobRef, {"id": -(2**63) - 1}, "id: must be in"),
    (ListWeights, {"limit": 100_001}, "limit: must be in 0..100000"),
    (ListWeights, {"limit": -1}, "limit: must be in 0..100000"),
    (ListWeights, {"dataset": 2**64}, "dataset: must be in"),
    (ListWeights, {"layer": 1.0}, "layer: expected an integer, got 1.0"),
    (ListJobs, {"status": 3}, "status: expected a string"),
    (RestartActor, {"name": 3}, "name: expected an actor name, got 3"),
    (SubmitJob, {}, "data: expected the path of a dataset file or directory"),
    (SubmitJob, {"data": "rel/a.md"}, "data: 'rel/a.md' must be an absolute path"),
    (SubmitJob, {"data": "/d", "name": 5}, "name: expected a string"),
    (SubmitJob, {"data": "/d", "strict": 1}, "strict: expected true or false, got 1"),
    (SubmitJob, {"data": "/d", "epochs": "3"}, "epochs: expected an integer, got '3'"),
    (SubmitJob, {"data": "/d", "seed": 2**63}, "seed: must be in"),
    (SubmitJob, {"data": "/d", "colour": 1}, "colour: unknown option (known: difficulty_bits,"),
    (SubmitJob, {"data": "/d", "epochs": 0}, "epochs: must be in 1..100 (training.epochs)"),
    (SubmitJob, {"data": "/d", "epochs": 101}, "epochs: must be in 1..100 (training.epochs)"),
    (SubmitJob, {"data": "/d", "population": 0}, "population: must be in 1..4096"),
    (SubmitJob, {"data": "/d", "population": 4097}, "population: must be in 1..4096"),
    (SubmitJob, {"data": "/d", "generations": 0}, "generations: must be in 1..1000000"),
    (SubmitJob, {"data": "/d", "generations": 10**6 + 1}, "generations: must be in 1..1000000"),
    (SubmitJob, {"data": "/d", "difficulty_bits": 0}, "difficulty_bits: must be in 1..32"),
    (SubmitJob, {"data": "/d", "difficulty_bits": 33}, "difficulty_bits: must be in 1..32"),
    (SubmitJob, {"data": "/d", "zero_bits": -1}, "zero_bits: must be in 0..32"),
    (SubmitJob, {"data": "/d", "zero_bits": 33}, "zero_bits: must be in 0..32"),
    (SubmitJob, {"data": "/d", "passes": 0}, "passes: must be in 1..1024 (training.passes)"),
    (SubmitJob, {"data": "/d", "passes": 1025}, "passes: must be in 1..1024 (training.passes)"),
    (SubmitJob, {"data": "/d", "priority": 0}, "priority: must be in 1..1000"),
    (SubmitJob, {"data": "/d", "priority": 1001}, "priority: must be in 1..1000"),
    (SubmitJob, {"data": "/d", "priority": "high"}, "priority: expected an integer, got 'high'"),
    (SetPriority, {"id": 7}, "priority: expected an integer, got None"),
    (SetPriority, {"priority": 5}, "id: expected an integer, got None"),
    (SetPriority, {"id": 7, "priority": 1001}, "priority: must be in 1..1000"),
    (SetPriority, {"id": 7, "priority": 5, "share": 1}, "share: unknown parameter"),
    (StartValidation, {"sample": 1.5}, "sample: 1.5 is outside (0, 1]"),
    (StartValidation, {"sample": 0}, "sample: 0 is outside (0, 1]"),
    (StartValidation, {"sample": "all"}, "sample: expected a number in (0, 1], got 'all'"),
    (StartValidation, {"seed": "x"}, "seed: expected an integer, got 'x'"),
    (StartValidation, {"seed": 2**70}, "seed: must be in"),
    (StartValidation, {"evaluator": ""}, "evaluator: expected an evaluator name, got ''"),
    (StartValidation, {"against": 4}, "against: expected an evaluator name, got 4"),
    (StartValidation, {"color": 1}, "color: unknown parameter"),
    (ShowValidation, {"id": 2**63}, "id: must be in"),
    (DeployLayer, {"layer": -1}, "layer: expected an integer >= 0, got -1"),
    (DeployLayer, {"layer": 2**63}, f"layer: must be in 0..{INT64_MAX}"),
    (DeployLayer, {"layer": 1, "dry_run": "yes"}, "dry_run: expected true or false, got 'yes'"),
    (DeployLayer, {"layer": 1, "target_fitness": "0.5"}, "target_fitness: expected a number"),
    (DeployLayer, {"layer": 1, "min_difficulty": -2}, "min_difficulty: expected an integer >= 0"),
    (DeployLayer, {"layer": 1, "validation_mode": 1}, "validation_mode: expected strict or"),
    # bounds: every integer, the enum values, names printable and short
    (SubmitJob, {"data": "/d", "epochs": 10**20}, "epochs: must be in 1..100 (training.epochs)"),
    (SubmitJob, {"data": "/d", "seed": 2**63}, f"seed: must be in {INT64_MIN}..{INT64_MAX}"),
    (SubmitJob, {"data": "/d", "name": "n" * 65}, "name: is 65 characters long; at most 64"),
    (
        SubmitJob,
        {"data": "/d", "name": "job\x1b[2J"},
        "name: must be printable; it contains '\\x1b'",
    ),
    (SubmitJob, {"data": "/d", "name": "a\nb"}, "name: must be printable; it contains '\\n'"),
    (SubmitJob, {"data": "/d\nx.txt"}, "data: must be printable; it contains '\\n'"),
    (SubmitJob, {"data": "/" + "d" * 4096}, "data: is 4097 characters long; at most 4096"),
    (JobRef, {"id": 2**63}, f"id: must be in {INT64_MIN}..{INT64_MAX}"),
    (JobRef, {"id": -(2**63) - 1}, f"id: must be in {INT64_MIN}..{INT64_MAX}"),
    (ListWeights, {"dataset": 2**64}, f"dataset: must be in {INT64_MIN}..{INT64_MAX}"),
    (ListJobs, {"status": "bogus"}, "status: 'bogus' is not a job status (queued, running,"),
    (ListJobs, {"status": "done"}, "status: 'done' is not a job status"),
    (DeployLayer, {"layer": 1, "target_fitness": 1.5}, "target_fitness: 1.5 is outside [0, 1]"),
    (DeployLayer, {"layer": 1, "min_difficulty": 257}, "min_difficulty: must be in 0..256"),
    # evaluator specs: configured devices and in-process evaluators only
    (StartValidation, {"evaluator": "asic:socket://127.0.0.1:4028,32"}, "evaluator: 'asic:socket:"),
    (StartValidation, {"evaluator": "asic:/etc/shadow"}, "evaluator: 'asic:/etc/shadow': the"),
    (StartValidation, {"against": "rpc:/run/other.sock"}, "against: 'rpc:/run/other.sock': the"),
    (StartValidation, {"against": "socket://10.0.0.1:1"}, "against: 'socket://10.0.0.1:1': the"),
    (StartValidation, {"evaluator": "numba:0"}, "evaluator: 'numba:0': the control socket"),
    (StartValidation, {"evaluator": "numba:99999"}, "evaluator: 'numba:99999': the control"),
    (StartValidation, {"evaluator": "reference:1"}, "evaluator: 'reference:1': the control"),
    (StartValidation, {"evaluator": "../dev/ttyS0"}, "evaluator: '../dev/ttyS0': the control"),
]


@pytest.mark.parametrize("spec", ["reference", "numba", "numba:4", "cuda", "cuda:1", "chain0"])
def test_in_process_evaluators_and_device_names_are_accepted(spec: str) -> None:
    assert StartValidation.parse({"evaluator": spec, "against": spec}).evaluator == spec


def test_the_refused_evaluator_message_says_where_such_specs_belong() -> None:
    with pytest.raises(InputError) as err:
        StartValidation.parse({"evaluator": "asic:socket://127.0.0.1:4028,32"})
    assert str(err.value) == (
        "evaluator: 'asic:socket://127.0.0.1:4028,32': the control socket takes a configured "
        "device's name or an in-process evaluator (reference, numba[:THREADS], cuda[:GPU]); "
        "asic:, rpc: and socket:// evaluators are for the command line and the config file"
    )


@pytest.mark.parametrize(("kind", "params", "message"), BAD, ids=lambda v: repr(v)[:40])
def test_a_wrong_value_is_invalid_params_naming_it(
    kind: type[Params], params: dict[str, Any], message: str
) -> None:
    with pytest.raises(InputError) as err:
        kind.parse(params)
    assert str(err.value).startswith(message)
    assert err.value.field == message.split(":")[0]
    assert error_code(err.value) == "invalid_params"


def test_a_priority_travels_beside_the_options_not_among_them() -> None:
    request = SubmitJob.parse({"data": "/d", "priority": 30, "epochs": 2})
    assert request.priority == 30 and request.options == JobOptions(epochs=2)
    assert request.to_params() == {"data": "/d", "epochs": 2, "priority": 30}


def test_job_options_are_checked_in_the_order_given() -> None:
    with pytest.raises(InputError) as err:
        JobOptions.parse({"zero_bits": "4", "colour": 1})
    assert err.value.field == "zero_bits"
