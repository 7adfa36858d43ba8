// Registers one instance through Curator's service discovery
// (curator-x-discovery, Debian's libcurator-discovery-java 5.4) the way
// Spring Cloud Zookeeper does: a ServiceInstance with a ZookeeperInstance
// payload, serialized by JsonInstanceSerializer, as an ephemeral node under
// <base>/<service>. The zookeeper source's integration tests run it and
// drive it through stdin:
//
//   java [-Dsession=<ms>] [-Ddigest=<user>:<password>] Registrar <connect string> <base path> <service> <id> <address> <port> [key=value...]
//
// With -Ddigest, it authenticates with ZooKeeper's digest scheme and creates
// every node (the base path's too) with the ACL creator_all, readable by that
// user alone, as a Curator client with authorization() and an ACLProvider
// does.
//
// It prints "registered" once the node is written, then reads commands, one
// a line, answering "ok" to each: "status <STATUS>" (metadata
// instance_status, as Spring's /service-registry endpoint sets it),
// "enabled <true|false>" (ServiceInstance.enabled) and "unregister".
// JsonInstanceSerializer(Class) writes Curator's compatible form, without
// ServiceInstance.enabled, as Spring and Dubbo use it; with
// -Dcompatible=false it writes Curator's own full form, enabled included
// (JsonInstanceSerializer(Class, false)). It runs until stdin closes or it is
// killed; its session, and so its node, ends with it.
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

import org.apache.curator.framework.CuratorFramework;
import org.apache.curator.framework.CuratorFrameworkFactory;
import org.apache.curator.framework.api.ACLProvider;
import org.apache.curator.retry.ExponentialBackoffRetry;
import org.apache.curator.x.discovery.ServiceDiscovery;
import org.apache.curator.x.discovery.ServiceDiscoveryBuilder;
import org.apache.curator.x.discovery.ServiceInstance;
import org.apache.curator.x.discovery.details.JsonInstanceSerializer;
import org.apache.zookeeper.ZooDefs;
import org.apache.zookeeper.data.ACL;
import org.springframework.cloud.zookeeper.discovery.ZookeeperInstance;

public class Registrar {
	public static void main(String[] args) throws Exception {
		String connect = args[0], base = args[1], service = args[2], id = args[3], address = args[4];
		int port = Integer.parseInt(args[5]);
		Map<String, String> metadata = new HashMap<>();
		metadata.put("instance_status", "UP");
		for (int i = 6; i < args.length; i++) {
			String[] kv = args[i].split("=", 2);
			metadata.put(kv[0], kv[1]);
		}
		CuratorFrameworkFactory.Builder builder = CuratorFrameworkFactory.builder().connectString(connect)
			.sessionTimeoutMs(Integer.getInteger("session", 10000)).connectionTimeoutMs(5000)
			.retryPolicy(new ExponentialBackoffRetry(200, 5));
		String digest = System.getProperty("digest");
		if (digest != null) {
			builder.authorization("digest", digest.getBytes(StandardCharsets.UTF_8)).aclProvider(new ACLProvider() {
				public List<ACL> getDefaultAcl() { return ZooDefs.Ids.CREATOR_ALL_ACL; }
				public List<ACL> getAclForPath(String path) { return ZooDefs.Ids.CREATOR_ALL_ACL; }
			});
		}
		CuratorFramework client = builder.build();
		client.start();
		boolean enabled = true;
		ServiceInstance<ZookeeperInstance> instance = instance(service, id, address, port, metadata, enabled);
		boolean compatible = Boolean.parseBoolean(System.getProperty("compatible", "true"));
		ServiceDiscovery<ZookeeperInstance> discovery = ServiceDiscoveryBuilder.builder(ZookeeperInstance.class)
			.client(client).basePath(base).serializer(new JsonInstanceSerializer<>(ZookeeperInstance.class, compatible))
			.thisInstance(instance).build();
		discovery.start();
		System.out.println("registered");
		System.out.flush();
		BufferedReader in = new BufferedReader(new InputStreamReader(System.in));
		for (String line; (line = in.readLine()) != null;) {
			String[] cmd = line.trim().split(" ", 2);
			switch (cmd[0]) {
			case "status":
				metadata.put("instance_status", cmd[1]);
				discovery.updateService(instance(service, id, address, port, metadata, enabled));
				break;
			case "enabled":
				enabled = Boolean.parseBoolean(cmd[1]);
				discovery.updateService(instance(service, id, address, port, metadata, enabled));
				break;
			case "unregister":
				discovery.unregisterService(instance);
				break;
			default:
				System.out.println("unknown command: " + line);
				continue;
			}
			System.out.println("ok");
			System.out.flush();
		}
		discovery.close();
		client.close();
	}

	// instance is the ServiceInstance Spring Cloud Zookeeper registers: a
	// ZookeeperInstance payload with the instance's metadata.
	static ServiceInstance<ZookeeperInstance> instance(String service, String id, String address, int port,
			Map<String, String> metadata, boolean enabled) throws Exception {
		return ServiceInstance.<ZookeeperInstance>builder()
			.name(service).id(id).address(address).port(port).enabled(enabled)
			.payload(new ZookeeperInstance(id, service, new HashMap<>(metadata))).build();
	}
}
