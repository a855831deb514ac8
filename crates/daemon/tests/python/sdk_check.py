"""The Docker SDK for Python against berthd: images (pull from a loopback registry,
tag, get, build, save and load, remove), containers (run, logs, wait, remove), exec,
volumes, networks, events and disk usage.

Environment: DOCKER_HOST=unix://SOCKET, REGISTRY=127.0.0.1:PORT holding sdk/app:1.
Prints "SDK OK" at the end; any failed check raises (non-zero exit).
"""
import io
import os
import tempfile
import time

import docker
from docker import errors

c = docker.DockerClient(base_url=os.environ["DOCKER_HOST"], version="auto")
reg = os.environ["REGISTRY"]
assert c.ping()
assert c.version()["ApiVersion"] == "1.45", c.version()

# images
img = c.images.pull(f"{reg}/sdk/app", tag="1")
assert f"{reg}/sdk/app:1" in img.tags, img.tags
assert img.tag("sdk-local", "2")
local = c.images.get("sdk-local:2")
assert local.id == img.id, (local.id, img.id)
assert any("sdk-local:2" in i.tags for i in c.images.list()), c.images.list()
assert [i.id for i in c.images.list(name="sdk-local")] == [img.id]
assert local.history()[0]["Id"] == img.id
try:
    c.images.get("nosuch:1")
    raise AssertionError("nosuch:1 was found")
except errors.ImageNotFound:
    pass

start = time.time() - 1

# build (the legacy protocol: a tar context, JSON lines back)
with tempfile.TemporaryDirectory() as ctx:
    with open(os.path.join(ctx, "Dockerfile"), "w") as f:
        f.write("FROM sdk-local:2\nARG V=0\nRUN echo built-$V > /built\nCMD [\"cat\", \"/built\"]\n")
    built, logs = c.images.build(path=ctx, tag="sdk-built:1", buildargs={"V": "9"}, rm=True)
    text = "".join(l.get("stream", "") for l in logs)
    assert "Step 1/4 : FROM sdk-local:2" in text, text
    assert "sdk-built:1" in built.tags, built.tags
    try:
        c.images.build(fileobj=io.BytesIO(b"FROM sdk-local:2\nRUN exit 6\n"), tag="sdk-broken:1")
        raise AssertionError("a failing build did not raise")
    except errors.BuildError as e:
        assert "returned a non-zero code: 6" in str(e), e

# save and load
blob = b"".join(c.images.get("sdk-built:1").save(named=True))
c.images.remove("sdk-built:1")
loaded = c.images.load(blob)
assert [i.id for i in loaded] == [built.id], loaded

# containers
assert c.containers.run("sdk-built:1", remove=True) == b"built-9\n"
c.images.remove("sdk-built:1")
out = c.containers.run("sdk-local:2", ["sh", "-c", "echo hello; echo to-stderr >&2"], remove=True)
assert out == b"hello\n", out
ct = c.containers.run("sdk-local:2", ["sh", "-c", "echo out; exit 3"], detach=True)
assert ct.wait()["StatusCode"] == 3
assert ct.logs() == b"out\n", ct.logs()
ct.remove()
try:
    c.containers.get(ct.id)
    raise AssertionError("the removed container is still there")
except errors.NotFound:
    pass
try:
    c.containers.run("sdk-local:2", ["sh", "-c", "exit 5"], remove=True)
    raise AssertionError("a failing command did not raise")
except errors.ContainerError as e:
    assert e.exit_status == 5, e.exit_status

# exec
ct = c.containers.run("sdk-local:2", ["sleep", "60"], detach=True)
r = ct.exec_run(["sh", "-c", "echo in-exec; exit 4"])
assert (r.exit_code, r.output) == (4, b"in-exec\n"), r
ct.remove(force=True)

# volumes
v = c.volumes.create("sdkvol", labels={"team": "sdk"})
assert v.name == "sdkvol" and v.attrs["Labels"] == {"team": "sdk"}, v.attrs
assert [x.name for x in c.volumes.list(filters={"label": "team=sdk"})] == ["sdkvol"]
c.volumes.get("sdkvol").remove()
try:
    c.volumes.get("sdkvol")
    raise AssertionError("the removed volume is still there")
except errors.NotFound:
    pass

# networks: containers on a user network reach each other by name
net = c.networks.create("sdknet", driver="bridge")
assert "sdknet" in [n.name for n in c.networks.list()]
a = c.containers.run("sdk-local:2", ["sleep", "60"], detach=True, network="sdknet", name="sdk-a")
out = c.containers.run("sdk-local:2", ["ping", "-c", "1", "-W", "5", "sdk-a"], network="sdknet", remove=True)
assert b"1 packets received" in out, out
a.remove(force=True)
net.remove()
assert "sdknet" not in [n.name for n in c.networks.list()]

# events and disk usage
seen = [
    (e["Type"], e["Action"], e["Actor"]["ID"])
    for e in c.events(since=int(start), until=int(time.time()) + 1, decode=True, filters={"type": "volume"})
]
assert seen == [("volume", "create", "sdkvol"), ("volume", "destroy", "sdkvol")], seen
df = c.df()
assert [sorted(i["RepoTags"]) for i in df["Images"]] == [[f"{reg}/sdk/app:1", "sdk-local:2"]], df
assert df["Volumes"] == [] and df["LayersSize"] > 0, df

# the image goes last: a container used it
c.images.remove("sdk-local:2")
c.images.remove(f"{reg}/sdk/app:1")
assert c.images.list() == [], c.images.list()
print("SDK OK")
