"""A stand-in `pulumi` CLI for infra/tests/cloud_rollout.rs: keeps a stack's config and outputs in
a JSON file, answers `config set/get`, `up` and `stack output --json` as the real CLI does for
what `infra rollout` asks, and appends every call's arguments to a log.

Environment: STANDIN_DIR (state.json and pulumi.log live there), STANDIN_URL (the stack's load
balancer), STANDIN_LOCAL_SHA (the sha256 that `build: local` resolves to)."""

import json
import os
import sys

DIR = os.environ["STANDIN_DIR"]
STATE = os.path.join(DIR, "state.json")
PROJECT = "rustlb"
# Droplet addresses by colour: each colour on its own loopback block.
BLOCK = {"blue": 10, "green": 20}


def load():
    with open(STATE) as f:
        return json.load(f)


def save(state):
    with open(STATE + ".tmp", "w") as f:
        json.dump(state, f, indent=1)
    os.replace(STATE + ".tmp", STATE)


def outputs(config, stack):
    active = config.get(f"{PROJECT}:activeColor", "blue")
    names, ips, builds = [], [], {}
    for colour in ("blue", "green"):
        default = "2" if colour == active else "0"
        count = int(config.get(f"{PROJECT}:{colour}.count", default))
        build = config.get(f"{PROJECT}:{colour}.build", "local")
        builds[colour] = os.environ["STANDIN_LOCAL_SHA"] if build == "local" else build
        for i in range(1, count + 1):
            names.append(f"{PROJECT}-{stack}-{colour}-{i}")
            ips.append(f"127.0.{BLOCK[colour]}.{i}")
    return {
        "url": os.environ["STANDIN_URL"],
        "activeColor": active,
        "colorBuilds": builds,
        "dropletNames": names,
        "dropletPublicIps": ips,
        "databaseUri": "[secret]",
    }


def main(argv):
    with open(os.path.join(DIR, "pulumi.log"), "a") as log:
        log.write(json.dumps(argv) + "\n")
    args = [a for a in argv if a != "--non-interactive"]
    stack = None
    if "--stack" in args:
        i = args.index("--stack")
        stack = args[i + 1]
        del args[i : i + 2]
    if stack is None:
        sys.exit("error: no stack selected; pass --stack")
    state = load()
    if args[:2] == ["config", "set"]:
        rest = [a for a in args[2:] if a not in ("--path", "--secret")]
        key, value = rest
        state["config"][key] = value
        save(state)
    elif args[:2] == ["config", "get"]:
        key = args[2]
        if key not in state["config"]:
            sys.stderr.write(f"error: configuration key '{key}' not found for stack '{stack}'\n")
            sys.exit(255)
        print(state["config"][key])
    elif args[:1] == ["up"]:
        if "--yes" not in args:
            sys.exit("error: --yes must be passed in to proceed when running in non-interactive mode")
        state["outputs"] = outputs(state["config"], stack)
        state["applied"] = dict(state["config"])
        save(state)
        print(f"Updating ({stack}):\nResources:\n    ~ updated\n")
    elif args[:3] == ["stack", "output", "--json"]:
        print(json.dumps(state["outputs"], indent=2))
    else:
        sys.exit(f"error: the stand-in does not know `pulumi {' '.join(args)}`")


if __name__ == "__main__":
    main(sys.argv[1:])
