"""Reading template.yaml for the local runtime: a YAML loader that understands
CloudFormation's short tags, a resolver for the few intrinsics a laptop can answer,
and the functions and API routes the template declares.

The local server takes everything it serves from here, so a route, an environment
variable or a timeout changed in the template changes ``make run`` too: the two
cannot drift. Resolution is deliberately partial. Anything that needs a real AWS
account (``Fn::ImportValue``, ``Fn::GetAZs``, a resource type nothing emulates)
raises ``Unresolvable`` with a reason, and the caller decides whether that matters.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

LOCAL_ACCOUNT_ID = "123456789012"  # moto's default account: ARNs it makes use it too
LOCAL_STACK_NAME = "facegate-local"
LOCAL_API_ID = "local"
API_EVENT_TYPE = "Api"  # SAM's REST API event; HttpApi events are a different payload
FUNCTION_TYPES = ("AWS::Serverless::Function",)
API_TYPES = ("AWS::Serverless::Api", "AWS::ApiGateway::RestApi")
# SAM's defaults when neither the function nor Globals say.
SAM_DEFAULT_TIMEOUT_S = 3
SAM_DEFAULT_MEMORY_MB = 128


class Unresolvable(Exception):
    """A value that only a real CloudFormation deployment could supply."""


# --- YAML -------------------------------------------------------------------------


class CfnLoader(yaml.SafeLoader):
    """PyYAML's safe loader plus CloudFormation's short forms (``!Ref X`` becomes
    ``{"Ref": "X"}``, ``!Sub s`` becomes ``{"Fn::Sub": s}`` and so on), so the rest
    of the code only ever sees the long JSON form."""


def _short_tag(loader: CfnLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        assert isinstance(node, yaml.MappingNode)  # the third and last kind of YAML node
        value = loader.construct_mapping(node, deep=True)
    if suffix == "Ref":
        return {"Ref": value}
    if suffix == "Condition":
        return {"Condition": value}
    if suffix == "GetAtt" and isinstance(value, str):
        # The short form is "Logical.Attribute"; the attribute may itself contain dots.
        logical, _, attribute = value.partition(".")
        value = [logical, attribute]
    return {f"Fn::{suffix}": value}


CfnLoader.add_multi_constructor("!", _short_tag)


def load_yaml(text: str) -> dict[str, Any]:
    data = yaml.load(text, Loader=CfnLoader)  # noqa: S506 - CfnLoader is a SafeLoader  # nosec B506
    if not isinstance(data, dict):
        raise ValueError("a template is a YAML mapping")
    return data


# --- the template -------------------------------------------------------------------


@dataclass(frozen=True)
class Template:
    path: Path
    data: dict[str, Any]

    @classmethod
    def load(cls, path: str | Path) -> Template:
        path = Path(path).resolve()
        return cls(path, load_yaml(path.read_text(encoding="utf-8")))

    @classmethod
    def from_text(cls, text: str, path: str | Path = "template.yaml") -> Template:
        return cls(Path(path).resolve(), load_yaml(text))

    @property
    def root(self) -> Path:
        """CodeUri paths are relative to the template's directory."""
        return self.path.parent

    @property
    def resources(self) -> dict[str, dict[str, Any]]:
        return self.data.get("Resources") or {}

    @property
    def parameters(self) -> dict[str, dict[str, Any]]:
        return self.data.get("Parameters") or {}

    @property
    def globals(self) -> dict[str, Any]:
        return self.data.get("Globals") or {}

    def of_type(self, *types: str) -> dict[str, dict[str, Any]]:
        return {k: v for k, v in self.resources.items() if v.get("Type") in types}

    def parameter_default(self, name: str) -> str | None:
        default = self.parameters.get(name, {}).get("Default")
        return None if default is None else str(default)


# --- the resolver -------------------------------------------------------------------


class _NoValue:
    """``AWS::NoValue``: the property is removed, as if it had not been written."""

    def __repr__(self) -> str:
        return "AWS::NoValue"


NO_VALUE = _NoValue()
_SUB_VAR = re.compile(r"\$\{([^}]*)\}")


class Resolver:
    """Evaluates intrinsic functions against local values.

    Parameters take their template defaults unless overridden. Resources resolve
    only once something has given them a physical id (``set_physical``): the AWS
    emulation does so for what it creates; functions and APIs get local names here.
    """

    def __init__(
        self,
        template: Template,
        *,
        parameters: Mapping[str, str] | None = None,
        region: str = "us-east-1",
        account_id: str = LOCAL_ACCOUNT_ID,
        stack_name: str = LOCAL_STACK_NAME,
    ) -> None:
        self.template = template
        self.region = region
        self.account_id = account_id
        self.stack_name = stack_name
        self.parameters: dict[str, Any] = {}
        for name, spec in template.parameters.items():
            value = (parameters or {}).get(name, spec.get("Default"))
            if value is None:
                continue  # Ref to it raises Unresolvable, naming the parameter
            if spec.get("Type") == "CommaDelimitedList" and isinstance(value, str):
                value = [v.strip() for v in value.split(",")]
            self.parameters[name] = value if isinstance(value, list) else str(value)
        self._physical: dict[str, str] = {}
        self._attributes: dict[str, dict[str, Any]] = {}
        self._conditions: dict[str, bool] = {}
        for logical, resource in template.of_type(*FUNCTION_TYPES).items():
            given = (resource.get("Properties") or {}).get("FunctionName")
            try:
                name = self.default_name(logical) if given is None else _text(self.resolve(given))
            except Unresolvable:
                name = self.default_name(logical)
            self.set_physical(logical, name, Arn=self.lambda_arn(name))
        for logical in template.of_type(*API_TYPES):
            self.set_physical(logical, LOCAL_API_ID, RootResourceId="local-root")

    # --- names ---

    def default_name(self, logical_id: str) -> str:
        # CloudFormation appends a random suffix; locally a stable name is friendlier.
        return f"{self.stack_name}-{logical_id}"

    def lambda_arn(self, function_name: str) -> str:
        return f"arn:aws:lambda:{self.region}:{self.account_id}:function:{function_name}"

    def set_physical(self, logical_id: str, ref: str, **attributes: Any) -> None:
        self._physical[logical_id] = ref
        self._attributes[logical_id] = {k: v for k, v in attributes.items() if v is not None}

    def physical(self, logical_id: str) -> str | None:
        return self._physical.get(logical_id)

    # --- evaluation ---

    def resolve(self, value: Any) -> Any:
        if isinstance(value, dict):
            if len(value) == 1:
                ((key, arg),) = value.items()
                if key == "Ref":
                    return self._ref(arg)
                if key.startswith("Fn::"):
                    return self._function(key, arg)
            out = {}
            for k, v in value.items():
                r = self.resolve(v)
                if r is not NO_VALUE:
                    out[k] = r
            return out
        if isinstance(value, list):
            return [r for r in (self.resolve(v) for v in value) if r is not NO_VALUE]
        return value

    def condition(self, name: str) -> bool:
        if name not in self._conditions:
            spec = (self.template.data.get("Conditions") or {}).get(name)
            if spec is None:
                raise Unresolvable(f"condition {name!r} is not defined")
            self._conditions[name] = bool(self._condition_value(spec))
        return self._conditions[name]

    def _condition_value(self, value: Any) -> Any:
        if isinstance(value, dict) and len(value) == 1 and "Condition" in value:
            return self.condition(value["Condition"])
        return self.resolve(value)

    def _ref(self, name: Any) -> Any:
        if not isinstance(name, str):
            raise Unresolvable(f"Ref needs a name, got {name!r}")
        stack_arn = f"arn:aws:cloudformation:{self.region}:{self.account_id}:stack/{self.stack_name}/0"
        pseudo = {
            "AWS::Region": self.region,
            "AWS::AccountId": self.account_id,
            "AWS::StackName": self.stack_name,
            "AWS::StackId": stack_arn,
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::NotificationARNs": [],
        }
        if name == "AWS::NoValue":
            return NO_VALUE
        if name in pseudo:
            return pseudo[name]
        if name in self.parameters:
            return self.parameters[name]
        if name in self.template.parameters:
            raise Unresolvable(f"parameter {name} has no Default and no local value")
        if name in self._physical:
            return self._physical[name]
        resource = self.template.resources.get(name)
        if resource is None:
            raise Unresolvable(f"Ref {name}: no such parameter or resource")
        raise Unresolvable(f"Ref {name}: a {resource.get('Type')} is not emulated locally")

    def _get_att(self, logical: str, attribute: str) -> Any:
        attrs = self._attributes.get(logical)
        if attrs is None:
            if logical not in self.template.resources:
                raise Unresolvable(f"GetAtt {logical}.{attribute}: no such resource")
            kind = self.template.resources[logical].get("Type")
            raise Unresolvable(f"GetAtt {logical}.{attribute}: a {kind} is not emulated locally")
        if attribute not in attrs:
            raise Unresolvable(f"GetAtt {logical}.{attribute}: attribute not available locally")
        return attrs[attribute]

    def _function(self, key: str, arg: Any) -> Any:
        if key == "Fn::Sub":
            return self._sub(arg)
        if key == "Fn::GetAtt":
            logical, attribute = self.resolve(arg) if isinstance(arg, list) else str(arg).split(".", 1)
            return self._get_att(logical, attribute)
        if key == "Fn::Join":
            delimiter, items = arg
            return str(delimiter).join(_text(v) for v in self._list(items))
        if key == "Fn::Select":
            index, items = arg
            return self._list(items)[int(self.resolve(index))]
        if key == "Fn::Split":
            delimiter, text = arg
            return _text(self.resolve(text)).split(str(delimiter))
        if key == "Fn::If":
            name, when_true, when_false = arg
            return self.resolve(when_true if self.condition(name) else when_false)
        if key == "Fn::Equals":
            a, b = (self._condition_value(v) for v in arg)
            return _text(a) == _text(b)
        if key == "Fn::Not":
            return not self._condition_value(arg[0])
        if key == "Fn::And":
            return all(self._condition_value(v) for v in arg)
        if key == "Fn::Or":
            return any(self._condition_value(v) for v in arg)
        if key == "Fn::FindInMap":
            mapping, top, second = (self.resolve(v) for v in arg)
            try:
                return self.template.data["Mappings"][mapping][top][second]
            except KeyError:
                raise Unresolvable(f"FindInMap {mapping}.{top}.{second}: no such entry") from None
        if key == "Fn::Base64":
            return base64.b64encode(_text(self.resolve(arg)).encode()).decode()
        if key == "Fn::ToJsonString":
            return json.dumps(self.resolve(arg), separators=(",", ":"))
        if key == "Fn::Length":
            return len(self._list(arg))
        raise Unresolvable(f"{key} needs a real AWS account")

    def _list(self, value: Any) -> list[Any]:
        resolved = self.resolve(value)
        if not isinstance(resolved, list):
            raise Unresolvable(f"expected a list, got {resolved!r}")
        return resolved

    def _sub(self, arg: Any) -> str:
        if isinstance(arg, list):
            text, variables = arg[0], {k: self.resolve(v) for k, v in (arg[1] or {}).items()}
        else:
            text, variables = arg, {}

        def replace(m: re.Match[str]) -> str:
            name = m.group(1)
            if name.startswith("!"):  # ${!Literal} is the escape for a literal ${Literal}
                return "${" + name[1:] + "}"
            if name in variables:
                return _text(variables[name])
            if "." in name and not name.startswith("AWS::"):
                logical, attribute = name.split(".", 1)
                return _text(self._get_att(logical, attribute))
            return _text(self._ref(name))

        return _SUB_VAR.sub(replace, str(text))


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, dict)) or value is NO_VALUE:
        raise Unresolvable(f"expected a string, got {value!r}")
    return str(value)


def as_bool(value: Any) -> bool:
    """CloudFormation accepts booleans written as strings."""
    if isinstance(value, str):
        return value.strip().lower() == "true"
    return bool(value)


# --- functions and routes -------------------------------------------------------------


@dataclass(frozen=True)
class Route:
    """One ``Type: Api`` event: method and path template → function."""

    method: str  # upper case, or "ANY"
    path: str  # the resource path, e.g. /v1/results/{request_id}
    function: str  # the function's logical id
    api_key_required: bool = True
    api: str | None = None  # the logical id of the RestApiId, if given
    pattern: re.Pattern[str] = field(init=False, repr=False, compare=False)
    param_names: tuple[str, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        names: list[str] = []
        parts = []
        for segment in self.path.strip("/").split("/") if self.path.strip("/") else []:
            m = re.fullmatch(r"\{([^}]+?)(\+?)\}", segment)
            if m:
                names.append(m.group(1))
                # {proxy+} is greedy across segments; {name} is one non-empty segment.
                parts.append("(.+)" if m.group(2) else "([^/]+)")
            else:
                parts.append(re.escape(segment))
        object.__setattr__(self, "pattern", re.compile("^/" + "/".join(parts) + "$"))
        object.__setattr__(self, "param_names", tuple(names))

    @property
    def literal_segments(self) -> int:
        return sum(1 for s in self.path.strip("/").split("/") if s and not s.startswith("{"))

    def match(self, path: str) -> dict[str, str] | None:
        m = self.pattern.match(path)
        if m is None:
            return None
        return dict(zip(self.param_names, m.groups(), strict=True))


@dataclass(frozen=True)
class RouteMatch:
    route: Route
    path_parameters: dict[str, str]


@dataclass(frozen=True)
class WrongMethod:
    allowed: tuple[str, ...]


def match_route(routes: list[Route], method: str, path: str) -> RouteMatch | WrongMethod | None:
    """The route for ``method path``; ``WrongMethod`` if the path exists for other
    methods only; None if no route has that path. Like API Gateway, a literal
    segment beats a ``{param}`` one (``/v1/results/latest`` before ``/v1/results/{id}``)."""
    candidates = []
    for route in routes:
        params = route.match(path)
        if params is not None:
            candidates.append((route, params))
    if not candidates:
        return None
    candidates.sort(key=lambda c: c[0].literal_segments, reverse=True)
    method = method.upper()
    for wanted in (method, "ANY"):
        for route, params in candidates:
            if route.method == wanted:
                return RouteMatch(route, params)
    return WrongMethod(tuple(sorted({r.method for r, _ in candidates})))


@dataclass(frozen=True)
class FunctionSpec:
    logical_id: str
    name: str
    code_dir: Path
    handler: str  # "module.attribute", e.g. app.lambda_handler
    timeout_s: int
    memory_mb: int
    environment: dict[str, Any]  # Globals merged with the function's own, unresolved

    @property
    def handler_file(self) -> Path:
        module, _, _ = self.handler.rpartition(".")
        return self.code_dir / (module.replace(".", "/") + ".py")

    @property
    def handler_attribute(self) -> str:
        return self.handler.rpartition(".")[2]


def functions(template: Template, resolver: Resolver) -> dict[str, FunctionSpec]:
    """Every ``AWS::Serverless::Function`` with ``Globals.Function`` merged in the
    way SAM merges it: maps are merged key by key, scalars are overridden."""
    g = template.globals.get("Function") or {}
    out = {}
    for logical, resource in template.of_type(*FUNCTION_TYPES).items():
        props = resource.get("Properties") or {}

        def prop(name: str, default: Any = None, props: dict = props) -> Any:
            value = props.get(name, g.get(name, default))
            return resolver.resolve(value)

        env = {
            **((g.get("Environment") or {}).get("Variables") or {}),
            **((props.get("Environment") or {}).get("Variables") or {}),
        }
        code_uri = prop("CodeUri")
        if not isinstance(code_uri, str):
            raise ValueError(f"{logical}: CodeUri must be a local directory to run locally")
        handler = prop("Handler")
        if not isinstance(handler, str) or "." not in handler:
            raise ValueError(f"{logical}: Handler must look like module.function")
        out[logical] = FunctionSpec(
            logical_id=logical,
            name=str(resolver.physical(logical)),
            code_dir=(template.root / code_uri).resolve(),
            handler=handler,
            timeout_s=int(prop("Timeout", SAM_DEFAULT_TIMEOUT_S)),
            memory_mb=int(prop("MemorySize", SAM_DEFAULT_MEMORY_MB)),
            environment=env,
        )
    return out


def resolve_environment(spec: FunctionSpec, resolver: Resolver) -> tuple[dict[str, str], dict[str, str]]:
    """(variables, problems): every variable resolved to a string, and for each
    one that cannot be resolved locally, why. Lambda only accepts strings, so
    numbers and booleans are written the way CloudFormation writes them."""
    values: dict[str, str] = {}
    problems: dict[str, str] = {}
    for name, raw in spec.environment.items():
        try:
            value = resolver.resolve(raw)
            if value is NO_VALUE:
                continue
            values[name] = _text(value)
        except Unresolvable as e:
            problems[name] = str(e)
    return values, problems


def routes(template: Template, resolver: Resolver) -> list[Route]:
    """Every ``Type: Api`` event of every function. Whether an API key is needed
    comes from the event's ``Auth.ApiKeyRequired``, else its API's, else
    ``Globals.Api``; absent everywhere it is required, as the contract says."""
    global_auth = (template.globals.get("Api") or {}).get("Auth") or {}
    out = []
    for logical, resource in template.of_type(*FUNCTION_TYPES).items():
        events = (resource.get("Properties") or {}).get("Events") or {}
        for event in events.values():
            if event.get("Type") != API_EVENT_TYPE:
                continue
            props = event.get("Properties") or {}
            api_ref = props.get("RestApiId")
            api = api_ref.get("Ref") if isinstance(api_ref, dict) else None
            api_auth: dict[str, Any] = {}
            if api is not None:
                api_auth = ((template.resources.get(api) or {}).get("Properties") or {}).get("Auth") or {}
            required = True
            for auth in (global_auth, api_auth, props.get("Auth") or {}):
                if "ApiKeyRequired" in auth:
                    required = as_bool(resolver.resolve(auth["ApiKeyRequired"]))
            out.append(
                Route(
                    method=str(resolver.resolve(props["Method"])).upper(),
                    path="/" + str(resolver.resolve(props["Path"])).strip("/"),
                    function=logical,
                    api_key_required=required,
                    api=api,
                )
            )
    return out


def api_stage(template: Template, resolver: Resolver, api: str | None) -> str:
    """The stage name API Gateway would put into ``requestContext.stage``."""
    props: dict[str, Any] = {}
    if api is not None:
        props = (template.resources.get(api) or {}).get("Properties") or {}
    stage = props.get("StageName", (template.globals.get("Api") or {}).get("StageName"))
    if stage is None:
        return "Prod" if api is None else str(resolver.parameters.get("Stage", "local"))
    try:
        return _text(resolver.resolve(stage))
    except Unresolvable:
        return "local"


@dataclass(frozen=True)
class GatewayResponse:
    """One of an API's ``GatewayResponses``: how API Gateway itself answers an error."""

    status: int | None  # None: API Gateway's default status for the type
    templates: dict[str, str]  # content type → response template
    # ResponseParameters.Headers: header name → mapping expression ('literal', context.requestId, …)
    headers: dict[str, str] = field(default_factory=dict)


def gateway_responses(template: Template, resolver: Resolver, api: str | None) -> dict[str, GatewayResponse]:
    """The ``GatewayResponses`` of a SAM API, by response type (INVALID_API_KEY,
    DEFAULT_4XX, …), so the local server answers its own errors with the bodies
    the deployed API would."""
    if api is None:
        return {}
    props = (template.resources.get(api) or {}).get("Properties") or {}
    out = {}
    for kind, spec in (props.get("GatewayResponses") or {}).items():
        try:
            spec = resolver.resolve(spec)
        except Unresolvable:
            continue  # the built-in error shape answers instead
        status = spec.get("StatusCode")
        out[kind] = GatewayResponse(
            status=None if status is None else int(status),
            templates={str(k): str(v) for k, v in (spec.get("ResponseTemplates") or {}).items()},
            headers={str(k): str(v) for k, v in ((spec.get("ResponseParameters") or {}).get("Headers") or {}).items()},
        )
    return out
