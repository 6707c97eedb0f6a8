"""The local runtime's view of template.yaml: short tags, intrinsic resolution,
functions, routes and route matching."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from facegate_local.template import (
    NO_VALUE,
    Resolver,
    Route,
    RouteMatch,
    Template,
    Unresolvable,
    WrongMethod,
    api_stage,
    functions,
    gateway_responses,
    load_yaml,
    match_route,
    resolve_environment,
    routes,
)

ROOT = Path(__file__).resolve().parents[3]


def tpl(text: str) -> Template:
    return Template.from_text(textwrap.dedent(text), ROOT / "inline-template.yaml")


# --- the YAML loader -------------------------------------------------------------------


def test_short_tags_become_the_long_json_form():
    data = load_yaml(
        textwrap.dedent(
            """
            a: !Ref Stage
            b: !Sub "facegate/${Stage}/x"
            c: !Sub ["${A}-${B}", {A: !Ref X, B: b}]
            d: !GetAtt Table.StreamArn
            e: !GetAtt [Stack, Outputs.Url]
            f: !If [IsProd, !Equals [!Ref Stage, prod], false]
            g: !Join ["-", [a, !Select [0, !Split [",", "x,y"]]]]
            h: !Not [!Condition IsProd]
            i: !FindInMap [M, k1, k2]
            """
        )
    )
    assert data == {
        "a": {"Ref": "Stage"},
        "b": {"Fn::Sub": "facegate/${Stage}/x"},
        "c": {"Fn::Sub": ["${A}-${B}", {"A": {"Ref": "X"}, "B": "b"}]},
        "d": {"Fn::GetAtt": ["Table", "StreamArn"]},
        "e": {"Fn::GetAtt": ["Stack", "Outputs.Url"]},
        "f": {"Fn::If": ["IsProd", {"Fn::Equals": [{"Ref": "Stage"}, "prod"]}, False]},
        "g": {"Fn::Join": ["-", ["a", {"Fn::Select": [0, {"Fn::Split": [",", "x,y"]}]}]]},
        "h": {"Fn::Not": [{"Condition": "IsProd"}]},
        "i": {"Fn::FindInMap": ["M", "k1", "k2"]},
    }


def test_the_loader_stays_safe():
    with pytest.raises(Exception, match="python/object"):
        load_yaml("a: !!python/object/apply:os.system ['true']\n")


# --- the resolver -----------------------------------------------------------------------

SMALL = """
Parameters:
  Stage: {Type: String, Default: dev}
  Size: {Type: Number, Default: 90}
  NoDefault: {Type: String}
  Names: {Type: CommaDelimitedList, Default: "a,b"}
Conditions:
  IsProd: !Equals [!Ref Stage, prod]
  NotProd: !Not [!Condition IsProd]
Mappings:
  Sizes: {dev: {mem: 256}, prod: {mem: 1024}}
Resources:
  Table: {Type: AWS::DynamoDB::Table, Properties: {}}
  Queue: {Type: AWS::SQS::Queue}
  Fn:
    Type: AWS::Serverless::Function
    Properties: {CodeUri: fn/, Handler: app.handler}
  Named:
    Type: AWS::Serverless::Function
    Properties: {CodeUri: fn/, Handler: app.handler, FunctionName: !Sub "named-${Stage}"}
  Api: {Type: AWS::Serverless::Api, Properties: {StageName: !Ref Stage}}
"""


@pytest.fixture
def resolver() -> Resolver:
    return Resolver(tpl(SMALL), region="eu-west-1")


def test_parameters_take_their_defaults_or_the_given_value(resolver):
    assert resolver.resolve({"Ref": "Stage"}) == "dev"
    assert resolver.resolve({"Ref": "Size"}) == "90"
    assert resolver.resolve({"Ref": "Names"}) == ["a", "b"]
    prod = Resolver(tpl(SMALL), parameters={"Stage": "prod"})
    assert prod.resolve({"Ref": "Stage"}) == "prod"


def test_a_parameter_without_default_is_unresolvable(resolver):
    with pytest.raises(Unresolvable, match="NoDefault has no Default"):
        resolver.resolve({"Ref": "NoDefault"})


def test_sub_knows_parameters_pseudo_parameters_and_escapes(resolver):
    got = resolver.resolve({"Fn::Sub": "${AWS::StackName}/${Stage}/${AWS::Region}/${AWS::AccountId}/${!Keep}"})
    assert got == f"facegate-local/dev/eu-west-1/{resolver.account_id}/${{Keep}}"
    assert resolver.resolve({"Fn::Sub": ["${X}-${Stage}", {"X": {"Ref": "Size"}}]}) == "90-dev"


def test_resources_resolve_only_once_they_have_a_physical_id(resolver):
    with pytest.raises(Unresolvable, match="AWS::DynamoDB::Table is not emulated"):
        resolver.resolve({"Ref": "Table"})
    resolver.set_physical("Table", "facegate-local-Table", Arn="arn:table")
    assert resolver.resolve({"Ref": "Table"}) == "facegate-local-Table"
    assert resolver.resolve({"Fn::GetAtt": ["Table", "Arn"]}) == "arn:table"
    assert resolver.resolve({"Fn::Sub": "${Table}|${Table.Arn}"}) == "facegate-local-Table|arn:table"
    with pytest.raises(Unresolvable, match="StreamArn"):
        resolver.resolve({"Fn::GetAtt": ["Table", "StreamArn"]})
    with pytest.raises(Unresolvable, match="AWS::SQS::Queue is not emulated"):
        resolver.resolve({"Ref": "Queue"})
    with pytest.raises(Unresolvable, match="no such parameter or resource"):
        resolver.resolve({"Ref": "Nothing"})


def test_functions_and_apis_have_local_names(resolver):
    assert resolver.resolve({"Ref": "Fn"}) == "facegate-local-Fn"
    assert resolver.resolve({"Ref": "Named"}) == "named-dev"
    assert resolver.resolve({"Fn::GetAtt": ["Fn", "Arn"]}) == (
        f"arn:aws:lambda:eu-west-1:{resolver.account_id}:function:facegate-local-Fn"
    )
    assert resolver.resolve({"Ref": "Api"}) == "local"


def test_conditions_if_and_no_value(resolver):
    value = {
        "A": {"Fn::If": ["IsProd", "yes", "no"]},
        "B": {"Fn::If": ["NotProd", {"Ref": "AWS::NoValue"}, "kept"]},
        "C": [1, {"Ref": "AWS::NoValue"}, 2],
        "D": {"Fn::Or": [{"Condition": "IsProd"}, {"Fn::Equals": ["x", "x"]}]},
    }
    assert resolver.resolve(value) == {"A": "no", "C": [1, 2], "D": True}
    assert resolver.resolve({"Ref": "AWS::NoValue"}) is NO_VALUE


def test_join_select_split_findinmap_base64(resolver):
    assert resolver.resolve({"Fn::Join": [":", ["a", {"Ref": "Stage"}]]}) == "a:dev"
    assert resolver.resolve({"Fn::Select": [1, {"Fn::Split": [",", "x,y,z"]}]}) == "y"
    assert resolver.resolve({"Fn::FindInMap": ["Sizes", {"Ref": "Stage"}, "mem"]}) == 256
    assert resolver.resolve({"Fn::Base64": "hi"}) == "aGk="


def test_what_needs_a_real_account_is_unresolvable(resolver):
    for value in ({"Fn::ImportValue": "x"}, {"Fn::GetAZs": ""}):
        with pytest.raises(Unresolvable, match="real AWS account"):
            resolver.resolve(value)


# --- functions, environments, routes ------------------------------------------------------

APP = """
Parameters:
  Stage: {Type: String, Default: dev}
  Level: {Type: String, Default: INFO}
Globals:
  Function:
    Handler: app.lambda_handler
    Timeout: 28
    MemorySize: 512
    Environment:
      Variables:
        LEVEL: !Ref Level
        TABLE: !Ref Table
        SHARED: global
  Api:
    Auth: {ApiKeyRequired: true}
Resources:
  Table: {Type: AWS::DynamoDB::Table, Properties: {}}
  MyApi: {Type: AWS::Serverless::Api, Properties: {StageName: !Ref Stage}}
  Open: {Type: AWS::Serverless::Api, Properties: {StageName: v1, Auth: {ApiKeyRequired: false}}}
  One:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: functions/one/
      Timeout: 10
      Environment: {Variables: {SHARED: mine, ONLY: !ImportValue other-stack}}
      Events:
        Get: {Type: Api, Properties: {RestApiId: !Ref MyApi, Path: "/v1/things/{id}", Method: get}}
        Latest: {Type: Api, Properties: {RestApiId: !Ref MyApi, Path: /v1/things/latest, Method: get}}
        Health:
          Type: Api
          Properties: {RestApiId: !Ref MyApi, Path: /health, Method: get, Auth: {ApiKeyRequired: false}}
        Queue: {Type: SQS, Properties: {Queue: arn}}
  Two:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: functions/two
      Handler: pkg.mod.run
      Events:
        Post: {Type: Api, Properties: {RestApiId: !Ref MyApi, Path: "v1/things/{id}/", Method: post}}
        Any: {Type: Api, Properties: {RestApiId: !Ref Open, Path: "/files/{path+}", Method: any}}
"""


def test_functions_merge_globals_like_sam():
    t = tpl(APP)
    r = Resolver(t)
    fns = functions(t, r)
    one, two = fns["One"], fns["Two"]
    assert (one.timeout_s, one.memory_mb, one.name) == (10, 512, "facegate-local-One")
    assert (two.timeout_s, two.memory_mb) == (28, 512)
    assert one.handler_file == ROOT / "functions/one/app.py"
    assert one.handler_attribute == "lambda_handler"
    assert two.handler_file == ROOT / "functions/two/pkg/mod.py"
    assert two.handler_attribute == "run"
    assert set(one.environment) == {"LEVEL", "TABLE", "SHARED", "ONLY"}


def test_environments_resolve_to_strings_and_report_what_cannot():
    t = tpl(APP)
    r = Resolver(t, parameters={"Level": "DEBUG"})
    fns = functions(t, r)
    values, problems = resolve_environment(fns["One"], r)
    assert values == {"LEVEL": "DEBUG", "SHARED": "mine"}
    assert set(problems) == {"TABLE", "ONLY"}
    assert "not emulated" in problems["TABLE"]
    assert "real AWS account" in problems["ONLY"]
    r.set_physical("Table", "local-table")
    values, problems = resolve_environment(fns["Two"], r)
    assert values == {"LEVEL": "DEBUG", "TABLE": "local-table", "SHARED": "global"}
    assert problems == {}


def test_routes_come_from_api_events_with_their_key_requirement():
    t = tpl(APP)
    got = {(x.method, x.path, x.function, x.api_key_required, x.api) for x in routes(t, Resolver(t))}
    assert got == {
        ("GET", "/v1/things/{id}", "One", True, "MyApi"),
        ("GET", "/v1/things/latest", "One", True, "MyApi"),
        ("GET", "/health", "One", False, "MyApi"),
        ("POST", "/v1/things/{id}", "Two", True, "MyApi"),
        ("ANY", "/files/{path+}", "Two", False, "Open"),
    }


def test_the_stage_is_the_apis_stage_name():
    t = tpl(APP)
    r = Resolver(t, parameters={"Stage": "prod"})
    assert api_stage(t, r, "MyApi") == "prod"
    assert api_stage(t, r, "Open") == "v1"
    assert api_stage(t, r, None) == "Prod"  # SAM's implicit API


# --- route matching -----------------------------------------------------------------------

ROUTES = [
    Route("GET", "/v1/things/{id}", "One"),
    Route("GET", "/v1/things/latest", "Latest"),
    Route("POST", "/v1/things/{id}", "Two"),
    Route("ANY", "/files/{path+}", "Files"),
    Route("GET", "/", "Root"),
]


def test_a_param_segment_matches_one_segment():
    m = match_route(ROUTES, "get", "/v1/things/abc")
    assert isinstance(m, RouteMatch)
    assert (m.route.function, m.path_parameters) == ("One", {"id": "abc"})
    assert match_route(ROUTES, "GET", "/v1/things/a/b") is None
    assert match_route(ROUTES, "GET", "/v1/things/") is None


def test_a_literal_segment_beats_a_param():
    m = match_route(ROUTES, "GET", "/v1/things/latest")
    assert isinstance(m, RouteMatch)
    assert m.route.function == "Latest"
    post = match_route(ROUTES, "POST", "/v1/things/latest")  # only the param route takes POST
    assert isinstance(post, RouteMatch)
    assert (post.route.function, post.path_parameters) == ("Two", {"id": "latest"})


def test_greedy_params_and_any_method():
    m = match_route(ROUTES, "DELETE", "/files/a/b/c.jpg")
    assert isinstance(m, RouteMatch)
    assert (m.route.function, m.path_parameters) == ("Files", {"path": "a/b/c.jpg"})
    root = match_route(ROUTES, "GET", "/")
    assert isinstance(root, RouteMatch)
    assert root.route.function == "Root"


def test_wrong_method_and_unknown_path():
    wrong = match_route(ROUTES, "DELETE", "/v1/things/abc")
    assert wrong == WrongMethod(("GET", "POST"))
    assert match_route(ROUTES, "GET", "/v2/things/abc") is None


def test_regex_characters_in_paths_are_literal():
    routes_ = [Route("GET", "/v1/a.b", "Dot")]
    assert match_route(routes_, "GET", "/v1/axb") is None
    assert isinstance(match_route(routes_, "GET", "/v1/a.b"), RouteMatch)


# --- the real template ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def real() -> Template:
    return Template.load(ROOT / "template.yaml")


def test_the_real_template_declares_the_contracts_routes(real):
    # The contract's routes are fixed; new ones may only be added.
    got = {(x.method, x.path, x.function) for x in routes(real, Resolver(real))}
    assert got >= {
        ("POST", "/v1/compare", "CompareFunction"),
        ("POST", "/v1/detect", "DetectFunction"),
        ("POST", "/v1/features", "FeaturesFunction"),
        ("POST", "/v1/verify-identity", "VerifyIdentityFunction"),
        ("GET", "/v1/results/{request_id}", "ResultsFunction"),
        ("DELETE", "/v1/results/{request_id}", "ResultsFunction"),
        ("GET", "/v1/vendors", "VendorsFunction"),
        ("GET", "/v1/usage", "UsageFunction"),
    }
    # Every route needs the key but the spec's own (ARCHITECTURE.md: "no key needed"), which
    # exists only with PublishOpenApi.
    keyless = {(x.method, x.path) for x in routes(real, Resolver(real)) if not x.api_key_required}
    assert keyless == {("GET", "/openapi.json")}


def test_every_real_function_has_its_handler_file(real):
    fns = functions(real, Resolver(real))
    api_functions = {x.function for x in routes(real, Resolver(real))}
    assert len(api_functions) >= 6
    for fn in fns.values():
        assert fn.handler_file.is_file(), fn.handler_file
        if fn.logical_id in api_functions:
            assert fn.timeout_s <= 29  # inside API Gateway's integration timeout


def test_every_real_environment_variable_resolves_once_emulated_resources_exist(real):
    """What `make run` needs: an environment variable that names a resource type
    nothing emulates (or needs a real account) would be dropped locally."""
    from facegate_local.aws import CREATORS

    r = Resolver(real, parameters={"Stage": "dev"})
    for logical in real.of_type(*CREATORS):
        r.set_physical(logical, f"local-{logical}", Arn=f"arn:local:{logical}")
    for logical, spec in functions(real, r).items():
        values, problems = resolve_environment(spec, r)
        assert problems == {}, logical
        assert values["FACEGATE_STAGE"] == "dev"
        assert values["FACEGATE_RESULTS_TABLE"] == "local-ResultsTable"


def test_the_real_gateway_responses_are_read(real):
    responses = gateway_responses(real, Resolver(real), "FacegateApi")
    assert {"INVALID_API_KEY", "MISSING_AUTHENTICATION_TOKEN", "REQUEST_TOO_LARGE"} <= set(responses)
    assert responses["INVALID_API_KEY"].status == 403
    assert "application/json" in responses["INVALID_API_KEY"].templates
