"""Launch the pvtseg segmentation node on a camera topic.

    ros2 launch examples/ros2/pvtseg.launch.py image:=/camera/image_raw
    ros2 launch examples/ros2/pvtseg.launch.py model:=models/build/x.engine device:=cuda namespace:=front

pvtseg is a pip package, not an ament package, so the node is started as a process
(`pvtseg ros2 ...`) rather than with launch_ros' Node(package=..., executable=...). The
`pvtseg` command must be on PATH (run `ros2 launch` from the venv it is installed in).
Topics end up as /<namespace>/labels, /<namespace>/overlay, ...; the input is remapped
from `image` (and `image/compressed`) to the `image` argument.
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, ExecuteProcess
from launch.substitutions import LaunchConfiguration


def generate_launch_description():
    model = LaunchConfiguration("model")
    device = LaunchConfiguration("device")
    image = LaunchConfiguration("image")
    namespace = LaunchConfiguration("namespace")
    alpha = LaunchConfiguration("alpha")
    return LaunchDescription([
        DeclareLaunchArgument("model", default_value="models/build/camvid_pvt_v2_b0_segformer_labels.onnx",
                              description="exported .onnx / .ts / .engine with its .json beside it"),
        DeclareLaunchArgument("device", default_value="cpu", description="cpu, cuda or cuda:N"),
        DeclareLaunchArgument("image", default_value="/camera/image_raw",
                              description="sensor_msgs/Image topic to segment (its /compressed is used too)"),
        DeclareLaunchArgument("namespace", default_value="segmentation",
                              description="namespace of the node and of its output topics"),
        DeclareLaunchArgument("alpha", default_value="0.5", description="overlay opacity, 0..1"),
        ExecuteProcess(
            name="pvtseg_segmenter",
            cmd=["pvtseg", "ros2", "--model", model, "--device", device, "--overlay",
                 "--ros-args",
                 "-r", "__node:=pvtseg_segmenter",
                 "-r", ["__ns:=/", namespace],
                 "-r", ["image:=", image],
                 "-r", ["image/compressed:=", image, "/compressed"],
                 "-p", ["alpha:=", alpha]],
            output="screen",
        ),
    ])
