"""The Docker SDK for Python against berthd: images (pull from a loopback registry,
tag, get, remove), containers (run, logs, wait, remove), exec and volumes.

Environment: DOCKER_HOST=unix://SOCKET, REGISTRY=127.0.0.1:PORT holding sdk/app:1.
Prints "SDK OK" at the end; any failed check raises (non-zero exit).
"""
import os

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

# containers
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

# the image goes last: a container used it
c.images.remove("sdk-local:2")
c.images.remove(f"{reg}/sdk/app:1")
assert c.images.list() == [], c.images.list()
print("SDK OK")
